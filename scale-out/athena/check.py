#!/usr/bin/env python3
"""A check of the Athena SQL's dialect and logic, not of Athena.

A real Trino/Athena cannot run here. This script transpiles views.sql and insert.sql from
Trino's dialect to DuckDB's with sqlglot, runs them in DuckDB over an archive loaded as AWS's
standard CloudTrail table (the columns the SQL reads, "$path" and the "timestamp" day-folder
partition emulated), writes the three tables in the contract's layout (Parquet, partitioned by
delivery_day), and, with --bin, scores them with `trailsight score --aggregates` and compares the
Insights with `trailsight score` on the archive (exit status 1 when they differ).

What it proves: the SQL parses as Trino SQL, its logic gives the engine's aggregates. What it
cannot: Athena's own functions on edge cases (from_iso8601_timestamp, regexp flavours), the Hive
JsonSerDe's typing of AWS's table, partition projection, INSERT INTO's limits.

    pip install sqlglot==27.8.0 duckdb==1.5.6
    python3 scale-out/athena/check.py --archive datasets/demo --output /tmp/athena-aggregates \\
        --bin target/release/trailsight
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def statements(path):
    import sqlglot

    text = open(path).read()
    out = sqlglot.transpile(text, read="trino", write="duckdb")
    # The two places sqlglot's output does not run on DuckDB, rewritten here: Trino's byte
    # length of a string, length(to_utf8(s)), becomes LENGTH(ENCODE(s)) (DuckDB: OCTET_LENGTH);
    # a user agent's first 1024 bytes, from_utf8(substr(to_utf8(ua), 1, 1024)), becomes a
    # SUBSTRING of a BLOB, which DuckDB lacks: the check cuts 1024 characters instead (the
    # generated archives have no user agent that long, so the branch is not exercised).
    return [
        s.replace("LENGTH(ENCODE(", "OCTET_LENGTH(ENCODE(")
        .replace("DECODE(SUBSTRING(ENCODE(useragent), 1, 1024))", "SUBSTRING(useragent, 1, 1024)")
        for s in out
        if s.strip()
    ]


def load_cloudtrail(con, archive):
    """The archive as AWS's CloudTrail table: one row per record, readOnly as a string."""
    files = sorted(glob.glob(os.path.join(archive, "AWSLogs", "**", "CloudTrail", "**", "*.json.gz"),
                             recursive=True))
    if not files:
        sys.exit(f"check.py: no CloudTrail files under {archive}/AWSLogs")
    record = (
        "STRUCT(eventTime VARCHAR, eventSource VARCHAR, eventName VARCHAR, awsRegion VARCHAR, "
        "recipientAccountId VARCHAR, userIdentity STRUCT(arn VARCHAR, accountId VARCHAR), "
        "readOnly BOOLEAN, eventCategory VARCHAR, eventType VARCHAR, errorCode VARCHAR, "
        "eventID VARCHAR, userAgent VARCHAR)[]"
    )
    con.execute(f"""
        CREATE TABLE cloudtrail_logs_pp AS
        SELECT
          filename AS "$path",
          regexp_extract(filename, '/([0-9]{{4}}/[0-9]{{2}}/[0-9]{{2}})/[^/]+$', 1) AS "timestamp",
          r.eventTime AS eventtime, r.eventSource AS eventsource, r.eventName AS eventname,
          r.awsRegion AS awsregion, r.recipientAccountId AS recipientaccountid,
          r.userIdentity AS useridentity,
          lower(CAST(r.readOnly AS VARCHAR)) AS readonly,
          r.eventCategory AS eventcategory, r.eventType AS eventtype,
          r.errorCode AS errorcode, r.eventID AS eventid, r.userAgent AS useragent
        FROM (
          SELECT filename, unnest(Records) AS r
          FROM read_json({files!r}, columns={{'Records': '{record}'}}, compression='gzip',
                         filename=true, maximum_object_size=1073741824)
        )
    """)
    return len(files)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", required=True, help="a generated archive (trailsight generate)")
    p.add_argument("--output", required=True, help="where the aggregate tables are written")
    p.add_argument("--bin", help="trailsight binary: score both ways and compare the Insights")
    args = p.parse_args()
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    n = load_cloudtrail(con, args.archive)
    # views.sql's day range is an example: the check takes every day of the archive.
    views = statements(os.path.join(HERE, "views.sql"))
    views = [v.replace("'2024/03/04'", "'0000/00/00'").replace("'2024/03/13'", "'9999/99/99'")
             for v in views]
    for v in views:
        con.execute(v)
    tables = {
        "series_minutes": "trailsight_series_minutes",
        "attributions": "trailsight_attributions",
        "activity": "trailsight_activity",
    }
    for insert in statements(os.path.join(HERE, "insert.sql")):
        table = next(t for t in tables.values() if f"INSERT INTO {t}" in insert)
        select = insert.split(f"INSERT INTO {table}", 1)[1]
        con.execute(f"CREATE TABLE {table} AS {select}")
    os.makedirs(args.output, exist_ok=True)
    for folder, table in tables.items():
        con.execute(f"COPY {table} TO '{os.path.join(args.output, folder)}' "
                    "(FORMAT parquet, PARTITION_BY (delivery_day), OVERWRITE_OR_IGNORE)")
    with open(os.path.join(args.output, "_trailsight_aggregates.json"), "w") as f:
        json.dump({"contract": "trailsight-aggregates", "contract_version": 1,
                   "allowed_lateness_minutes": 15,
                   "written_by": "scale-out/athena/check.py (DuckDB, transpiled)"}, f)
    calls = con.execute("SELECT sum(calls) FROM trailsight_series_minutes").fetchone()[0]
    print(f"check.py: {n} files; the Athena SQL (run by DuckDB) counted {calls} calls into "
          f"{args.output}", file=sys.stderr)
    if not args.bin:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        outs = []
        for name, source in (("logs", [args.archive]), ("sql", ["--aggregates", args.output])):
            out = os.path.join(tmp, f"{name}.jsonl")
            subprocess.run([args.bin, "score", *source, "--store", os.path.join(tmp, name + ".db"),
                            "--out", out, "--no-progress"], check=True, capture_output=True)
            outs.append(open(out, "rb").read())
    if outs[0] != outs[1] or not outs[0]:
        print("check.py: Insights from the Athena SQL's aggregates DIFFER from the archive's",
              file=sys.stderr)
        return 1
    lines = outs[0].count(b"\n")
    print(f"check.py: Insights from the Athena SQL's aggregates equal the archive's "
          f"({lines} records, byte for byte)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
