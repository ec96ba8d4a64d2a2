import pytest
import torch

from kdapp.models import ARCHITECTURES, build, count_parameters, has_feature_maps


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_maps_images_to_logits_and_features(name):
    model = build(name).eval()
    x = torch.randn(5, 1, 28, 28)
    logits, features = model.forward_features(x)
    assert logits.shape == (5, 10)
    assert features.shape[0] == 5 and features.dim() in (2, 4)
    torch.testing.assert_close(model(x), logits)
    assert count_parameters(model) == count_parameters(name) > 0
    assert has_feature_maps(name) == (features.dim() == 4)


def test_seed_nets_have_the_articles_parameter_counts():
    # 1.2M as the article says, once its double pooling is fixed; its student with fc1 = 2704.
    assert count_parameters("seed_teacher") == 1_199_882
    assert count_parameters("seed_student") == 173_930
    assert count_parameters("mlp_1200") == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    assert count_parameters("mlp_800") == 784 * 800 + 800 + 800 * 800 + 800 + 800 * 10 + 10


def lenet_parameters(c1, c2, f1, f2):
    """By hand: two 5×5 convs, then fc layers from the 5×5 map of c2 channels."""
    return (25 * c1 + c1) + (25 * c1 * c2 + c2) + (25 * c2 * f1 + f1) + (f1 * f2 + f2) + (f2 * 10 + 10)


def test_lenets_have_the_counts_the_readme_gives():
    assert count_parameters("lenet5") == lenet_parameters(6, 16, 120, 84) == 61_706
    assert count_parameters("lenet5_wide") == lenet_parameters(32, 64, 256, 128) == 496_138


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ValueError) as e:
        build("resnet152")
    for name in ARCHITECTURES:
        assert name in str(e.value)
