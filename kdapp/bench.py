"""placeholder, filled in below"""


def add_parser(sub):
    pass
