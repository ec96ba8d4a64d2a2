"""python -m kdapp.tools.soak: nothing accepted is lost or run twice under a long, busy load.

The real app runs as its own process with 2 workers. Submitters keep the queue full (2 runs
training and 10 waiting, the total cap) by pressing Start over HTTP as the page does, from
visitors who each hold at most their two runs. Meanwhile 20 visitors each draw (/predict, a
re-drawn held-out digit) and poll the run list (/runs) once a second. After `seconds` the
submitters stop, the queue drains, and the run list is checked against every run accepted:

- lost: accepted, but absent from the list or not finished;
- duplicated: two rows for one acceptance, or a run whose epochs were trained twice;
- errors: requests that failed (HTTP errors, timeouts, error events).

Prints one JSON line; scripts/reliability.py turns it into RELIABILITY.md's table.
"""
import argparse
import asyncio
import json
import re
import secrets
import sys
import tempfile
import time
from collections import Counter

VISITORS = 20
TRAINING, WAITING = 2, 10   # runs training (the workers) and waiting (the queue's total cap)
RUN = dict(epochs=2, train_fraction=0.1, device="cpu")  # short runs: many pass through the queue
POLL_S = 1.0


async def _visitor(http, name, paths, stop_at, out):
    from kdapp.tools.loadtest import _predict, sketch_value
    i = 0
    while time.monotonic() < stop_at:
        k = (i + hash(name)) % len(paths)
        for kind in ("predict", "poll"):
            sent, why = time.monotonic(), None
            try:
                if kind == "predict":
                    answer = await _predict(http, [sketch_value(paths[k]), 4.0, None], name, "run")
                    ok = bool(answer[0])
                    why = None if ok else f"no answer: {answer!r:.120}"
                else:
                    r = await http.post("gradio_api/run/runs", json={"data": [], "session_hash": name})
                    r.raise_for_status()
                    ok = isinstance(r.json()["data"][0], list)
                    why = None if ok else f"not a run list: {r.text:.120}"
            except Exception as e:  # noqa: BLE001 - any failure is counted, and its kind kept for the record
                ok, why = False, f"{type(e).__name__}: {str(e):.120}"
            out.append((kind, (time.monotonic() - sent) * 1000, ok, why))
        i += 1
        await asyncio.sleep(POLL_S)


async def _submitters(http, start_data, stop_at, accepted, refused, queue_seen):
    """Keep TRAINING + WAITING runs accepted and unfinished; each submitter (start_data: owner ->
    the Start event's data) holds at most its cap of 2."""
    from kdapp.tools.loadtest import _last_event_data
    owners = list(start_data)
    while time.monotonic() < stop_at:
        r = await http.post("gradio_api/run/runs", json={"data": [], "session_hash": "submitter"})
        states = {run["id"]: run["state"] for run in r.json()["data"][0]}
        active = [i for i, owner in accepted if states.get(i) in ("queued", "running")]
        queue_seen.append(sum(states.get(i) == "queued" for i, _ in accepted))
        for owner in owners:
            if len(active) >= TRAINING + WAITING:
                break
            if sum(o == owner for i, o in accepted if i in active) >= 2:
                continue
            r = await http.post("gradio_api/call/start", json={"data": start_data[owner]})
            r.raise_for_status()
            stream = await http.get(f"gradio_api/call/start/{r.json()['event_id']}")
            notice = _last_event_data(stream.text)[0]
            found = re.search(r"Run ([0-9a-f]{8})", notice or "")
            if found:
                accepted.append((found.group(1), owner))
                active.append(found.group(1))
            else:
                refused.append(notice)
        await asyncio.sleep(0.5)


def soak(seconds=300.0, visitors=VISITORS, log=print):
    import httpx

    from kdapp.evaluation.inference import percentiles
    from kdapp.tools.loadtest import upload_canvases
    from kdapp.tools.serving import start_app, start_event_data, wait_for_http
    runs_dir = tempfile.mkdtemp(prefix="kdapp-soak-")
    server, url = start_app(runs_dir, env={"KDAPP_WORKERS": str(TRAINING)})
    try:
        wait_for_http(url, server, timeout=300)
        start_data = {owner: start_event_data(url, owner, **RUN)
                      for owner in (f"soak-{secrets.token_hex(4)}" for _ in range((TRAINING + WAITING) // 2 + 4))}
        with httpx.Client(base_url=url, timeout=60) as http:
            paths, _ = upload_canvases(http, 40)

        async def main():
            requests, accepted, refused, queue_seen = [], [], [], []
            limits = httpx.Limits(max_connections=visitors + 4)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
                stop_at = time.monotonic() + seconds
                await asyncio.gather(_submitters(http, start_data, stop_at, accepted, refused, queue_seen),
                                     *(_visitor(http, f"v{v}", paths, stop_at, requests)
                                       for v in range(visitors)))
                log(f"soak: {seconds:.0f} s done, {len(accepted)} runs accepted; draining the queue")
                drain_until = time.monotonic() + 900
                while time.monotonic() < drain_until:
                    r = await http.post("gradio_api/run/runs", json={"data": [], "session_hash": "check"})
                    listed = r.json()["data"][0]
                    if all(run["state"] not in ("queued", "running") for run in listed):
                        break
                    await asyncio.sleep(2)
            return requests, accepted, refused, queue_seen, listed
        requests, accepted, refused, queue_seen, listed = asyncio.run(main())
    finally:
        server.terminate()
        server.wait(30)
    from kdapp.lab.store import RunStore
    store = RunStore(runs_dir)
    ids = [run["id"] for run in listed]
    accepted_ids = [i for i, _ in accepted]
    lost = [i for i in accepted_ids if i not in ids or store.get(i)["state"] != "finished"]
    twice = [i for i in accepted_ids if ids.count(i) != 1
             or sorted(set(store.get(i)["accuracy"]["epoch"])) != store.get(i)["accuracy"]["epoch"]]
    out = {"seconds": seconds, "visitors": visitors, "workers": TRAINING, "queue_cap": WAITING,
           "runs_accepted": len(accepted), "runs_finished": len(accepted) - len(lost), "runs_lost": len(lost),
           "runs_duplicated": len(twice) + (len(ids) - len(set(ids))), "rows_not_accepted": len(set(ids) - set(accepted_ids)),
           "starts_refused": len(refused), "queued_max": max(queue_seen, default=0),
           "queued_median": sorted(queue_seen)[len(queue_seen) // 2] if queue_seen else 0}
    for kind in ("predict", "poll"):
        mine = [(ms, ok, why) for k, ms, ok, why in requests if k == kind]
        good = [ms for ms, ok, _ in mine if ok]
        p50, p95 = percentiles(good) if good else (None, None)
        reasons = Counter(why for _, ok, why in mine if not ok)
        out.update({f"{kind}_requests": len(mine), f"{kind}_errors": sum(not ok for _, ok, _ in mine),
                    f"{kind}_p50_ms": p50, f"{kind}_p95_ms": p95,
                    f"{kind}_error_reasons": dict(reasons.most_common(5))})  # why, so a failure can be chased
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kdapp.tools.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--visitors", type=int, default=VISITORS)
    args = parser.parse_args(argv)
    out = soak(args.seconds, args.visitors, log=lambda *a: print(*a, file=sys.stderr, flush=True))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
