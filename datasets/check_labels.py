#!/usr/bin/env python3
"""Compare trailsight's Insights with a generated archive's labels (a quick check until `trailsight
eval` exists). Usage:

    trailsight generate --out DIR --days 9 --seed 7 --scale 0.5
    trailsight score DIR --store DIR.db --out DIR.jsonl
    python3 datasets/check_labels.py DIR/labels.json DIR.jsonl

Prints, per labelled incident, FOUND/MISSED with the Start's offset from the true start in
minutes (found = a Start on the labelled series within -5..+10 minutes), then every other Start
as FALSE. Exits 1 when an incident is missed or a false Start exists.
"""
import json
import sys
from datetime import datetime, timezone


def minute(t):
    return int(datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() // 60)


def main(labels_path, insights_path):
    labels = json.load(open(labels_path))["incidents"]
    records = [json.loads(line) for line in open(insights_path) if line.strip()]
    starts = [r for r in records if r["insightDetails"]["state"] == "Start"]
    matched, missed = set(), 0
    for inc in labels:
        same = [
            r for r in starts
            if r["recipientAccountId"] == inc["account"] and r["awsRegion"] == inc["region"]
            and r["insightDetails"]["eventSource"] == inc["eventSource"]
            and r["insightDetails"]["eventName"] == inc["eventName"]
            and r["insightDetails"]["insightType"] == inc["insightType"]
            and r["insightDetails"].get("errorCode") == inc["errorCode"]
        ]
        offsets = [minute(r["eventTime"]) - minute(inc["start"]) for r in same]
        ok = [r for r, d in zip(same, offsets) if -5 <= d <= 10]
        matched.update(r["eventID"] for r in ok)
        missed += not ok
        print(f"{inc['kind']:16} {'FOUND' if ok else 'MISSED'} offsets={offsets}")
    false = [r for r in starts if r["eventID"] not in matched]
    for r in false:
        d, x = r["insightDetails"], r.get("additionalEventData", {})
        print("FALSE", r["eventTime"], r["recipientAccountId"], r["awsRegion"], d["eventSource"],
              d["eventName"], d.get("errorCode"), x.get("direction"), x.get("windowMinutes"),
              x.get("observed"), x.get("expected"))
    print(f"{len(labels) - missed}/{len(labels)} found, {len(false)} false Starts")
    return 1 if missed or false else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
