#!/usr/bin/env python3
"""Converts a CloudTrail archive (S3 layout, e.g. from `trailsight generate`) into the Parquet that
Amazon Security Lake writes for CloudTrail (AWS source version 2.0: OCSF 1.1 API Activity,
class_uid 6003), with Security Lake's folder layout:

    OUT/aws/CLOUD_TRAIL_MGMT/2.0/region=R/accountId=A/eventDay=YYYYMMDD/<uuid>.gz.parquet
    OUT/aws/S3_DATA/2.0/...             (S3 data events)
    OUT/aws/LAMBDA_EXECUTION/2.0/...    (Lambda data events)

Each row maps one CloudTrail record to OCSF as AWS publishes the mapping (ocsf/examples,
mappings/markdown/AWS/v1.1.0/CloudTrail/API Activity/README.md and its v1.5.0 successor; see
docs/security-lake.md): nested STRUCT columns (metadata, api, actor, cloud, src_endpoint,
http_request, resources), `time` in milliseconds and `time_dt` as a UTC timestamp, and every
CloudTrail field OCSF has no place for (readOnly, managementEvent, sharedEventID,
sessionIssuer.type...) in the `unmapped` MAP(VARCHAR, VARCHAR), its value as JSON text
("true"/"false" for booleans). The partition values live in the folder names only, as Security
Lake writes them.

One Parquet file is written per CloudTrail delivery file and Security Lake source, and its
modification time is set to the delivery time in the CloudTrail file's name: Security Lake writes
an object when the events arrive, and trailsight reads Security Lake's files in modification-time
order, so records delivered late stay late and an archive scores to the same Insights in both
forms. Data events of other services than S3 and Lambda are not a Security Lake source: they are
counted and left out.

Needs duckdb (CI installs duckdb==1.5.6). Usage:

    python3 datasets/to_security_lake.py ARCHIVE OUT
"""

import argparse
import calendar
import datetime
import gzip
import ipaddress
import json
import os
import re
import sys
import tempfile
import uuid

import duckdb

# Security Lake's source names and the source version written.
MANAGEMENT = "CLOUD_TRAIL_MGMT"
S3_DATA = "S3_DATA"
LAMBDA = "LAMBDA_EXECUTION"
SOURCE_VERSION = "2.0"

# The OCSF columns, typed as Security Lake's tables declare them (Glue: struct<...>, map<...>).
COLUMNS = {
    "metadata": "STRUCT(product STRUCT(version VARCHAR, name VARCHAR, vendor_name VARCHAR, "
    "feature STRUCT(name VARCHAR)), uid VARCHAR, event_code VARCHAR, profiles VARCHAR[], "
    "version VARCHAR)",
    "time": "BIGINT",
    "time_dt": "TIMESTAMPTZ",
    "cloud": "STRUCT(region VARCHAR, provider VARCHAR, account STRUCT(uid VARCHAR))",
    "api": "STRUCT(response STRUCT(error VARCHAR, message VARCHAR, data VARCHAR), "
    "operation VARCHAR, version VARCHAR, service STRUCT(name VARCHAR), "
    "request STRUCT(uid VARCHAR, data VARCHAR))",
    "actor": "STRUCT(user STRUCT(type VARCHAR, name VARCHAR, uid VARCHAR, uid_alt VARCHAR, "
    "account STRUCT(uid VARCHAR), credential_uid VARCHAR), session STRUCT(created_time_dt "
    "TIMESTAMPTZ, is_mfa BOOLEAN, issuer VARCHAR), invoked_by VARCHAR, idp STRUCT(name VARCHAR))",
    "http_request": "STRUCT(user_agent VARCHAR)",
    "src_endpoint": "STRUCT(uid VARCHAR, ip VARCHAR, domain VARCHAR)",
    "resources": "STRUCT(uid VARCHAR, owner STRUCT(account STRUCT(uid VARCHAR)), "
    "type VARCHAR)[]",
    "class_name": "VARCHAR",
    "class_uid": "INTEGER",
    "category_name": "VARCHAR",
    "category_uid": "INTEGER",
    "severity": "VARCHAR",
    "severity_id": "INTEGER",
    "activity_name": "VARCHAR",
    "activity_id": "INTEGER",
    "type_uid": "BIGINT",
    "type_name": "VARCHAR",
    "status": "VARCHAR",
    "status_id": "INTEGER",
    "unmapped": "MAP(VARCHAR, VARCHAR)",
}

# CloudTrail fields with an OCSF place (everything else goes to `unmapped`).
MAPPED = {
    "eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
    "userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements",
    "requestID", "eventID", "eventType", "apiVersion", "recipientAccountId", "eventCategory",
    "resources", "vpcEndpointId",
}

STAMP = re.compile(r"_(\d{8}T\d{4})Z_")

ACTIVITIES = [
    (1, "Create", ("Create", "Run", "Add", "Register", "Allocate", "Import", "Issue")),
    (2, "Read", ("Get", "Describe", "List", "Head", "Lookup", "Search", "Select", "Scan",
                 "Query", "BatchGet")),
    (3, "Update", ("Update", "Modify", "Put", "Set", "Attach", "Associate", "Enable",
                   "Start", "Stop", "Reboot", "Tag", "Untag", "Copy", "Restore", "Assume")),
    (4, "Delete", ("Delete", "Remove", "Terminate", "Detach", "Disassociate", "Disable",
                   "Deregister", "Revoke", "Release", "Cancel")),
]


def activity(event_name):
    """OCSF API Activity's activity (Create, Read, Update, Delete, Other) from the eventName's
    verb. AWS publishes that the activity comes from eventName, not the rule: this prefix rule is
    the converter's approximation (trailsight reads readOnly from `unmapped`)."""
    for number, name, prefixes in ACTIVITIES:
        if any(event_name.startswith(p) for p in prefixes):
            return number, name
    return 99, "Other"


def text(value):
    """An `unmapped` value: strings as they are, anything else as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def flatten(prefix, value, out):
    """Nested objects become dotted keys in `unmapped` (as Security Lake does for
    `userIdentity.sessionContext.sessionIssuer.type`, `tlsDetails.tlsVersion`...)."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            flatten(f"{prefix}.{key}", inner, out)
    elif value is not None:
        out[prefix] = text(value)


def is_ip(value):
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def epoch_ms(event_time):
    """CloudTrail's eventTime (`2024-01-01T00:00:00Z`, maybe with a fraction) in milliseconds."""
    t = datetime.datetime.strptime(event_time[:19], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t.timetuple()) * 1000


def source_of(record):
    """The Security Lake source a record belongs to, or None (not a Security Lake source)."""
    management = record.get("managementEvent")
    category = record.get("eventCategory")
    if management is True or (management is None and category in (None, "Management")):
        return MANAGEMENT
    if record.get("eventSource") == "s3.amazonaws.com":
        return S3_DATA
    if record.get("eventSource") == "lambda.amazonaws.com":
        return LAMBDA
    return None


def ocsf(record):
    """One CloudTrail record as an OCSF 1.1 API Activity row."""
    identity = record.get("userIdentity") or {}
    session = identity.get("sessionContext") or {}
    attributes = session.get("attributes") or {}
    issuer = session.get("sessionIssuer") or {}
    name = record.get("eventName") or ""
    activity_id, activity_name = activity(name)
    error = record.get("errorCode")
    ms = epoch_ms(record["eventTime"])
    source_ip = record.get("sourceIPAddress")
    created = attributes.get("creationDate")
    mfa = attributes.get("mfaAuthenticated")

    unmapped = {}
    for key, value in record.items():
        if key not in MAPPED and key != "userIdentity":
            flatten(key, value, unmapped)
    for key in ("type", "principalId", "accountId", "userName"):
        if key in issuer:
            unmapped[f"userIdentity.sessionContext.sessionIssuer.{key}"] = text(issuer[key])
    if "ec2RoleDelivery" in session:
        unmapped["userIdentity.sessionContext.ec2RoleDelivery"] = text(session["ec2RoleDelivery"])
    unmapped = {k: v for k, v in unmapped.items() if v is not None}

    def data(value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    return {
        "metadata": {
            "product": {
                "version": record.get("eventVersion"),
                "name": "CloudTrail",
                "vendor_name": "AWS",
                "feature": {"name": record.get("eventCategory")},
            },
            "uid": record.get("eventID"),
            "event_code": record.get("eventType"),
            "profiles": ["cloud", "datetime"],
            "version": "1.1.0",
        },
        "time": ms,
        "time_dt": datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(),
        "cloud": {
            "region": record.get("awsRegion"),
            "provider": "AWS",
            "account": {"uid": record.get("recipientAccountId")},
        },
        "api": {
            "response": {
                "error": error,
                "message": record.get("errorMessage"),
                "data": data(record.get("responseElements")),
            },
            "operation": record.get("eventName"),
            "version": record.get("apiVersion"),
            "service": {"name": record.get("eventSource")},
            "request": {
                "uid": record.get("requestID"),
                "data": data(record.get("requestParameters")),
            },
        },
        "actor": {
            "user": {
                "type": identity.get("type"),
                "name": identity.get("userName"),
                "uid": identity.get("arn"),
                "uid_alt": identity.get("principalId"),
                "account": {"uid": identity.get("accountId")},
                "credential_uid": identity.get("accessKeyId"),
            },
            "session": {
                "created_time_dt": created,
                "is_mfa": None if mfa is None else str(mfa).lower() == "true",
                "issuer": issuer.get("arn"),
            },
            "invoked_by": identity.get("invokedBy"),
            "idp": {"name": (identity.get("webIdFederationData") or {}).get("federatedProvider")},
        },
        "http_request": {"user_agent": record.get("userAgent")},
        "src_endpoint": {
            "uid": record.get("vpcEndpointId"),
            "ip": source_ip if source_ip and is_ip(source_ip) else None,
            "domain": source_ip if source_ip and not is_ip(source_ip) else None,
        },
        "resources": [
            {
                "uid": r.get("ARN"),
                "owner": {"account": {"uid": r.get("accountId")}},
                "type": r.get("type"),
            }
            for r in (record.get("resources") or [])
        ],
        "class_name": "API Activity",
        "class_uid": 6003,
        "category_name": "Application Activity",
        "category_uid": 6,
        "severity": "Informational",
        "severity_id": 1,
        "activity_name": activity_name,
        "activity_id": activity_id,
        "type_uid": 600300 + activity_id,
        "type_name": f"API Activity: {activity_name}",
        "status": "Failure" if error else "Success",
        "status_id": 2 if error else 1,
        "unmapped": unmapped,
    }


def activity_files(archive):
    """CloudTrail log files under the archive, in name order (digests and Insights skipped)."""
    found = []
    for folder, dirs, files in os.walk(archive):
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and d not in ("CloudTrail-Digest", "CloudTrail-Insight")
        )
        for name in files:
            if name.endswith((".json", ".json.gz")) and "CloudTrail" in folder:
                found.append(os.path.join(folder, name))
    return sorted(found)


def read_records(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f).get("Records") or []


def delivery_time(path):
    """Seconds since the epoch of the `_YYYYMMDDTHHmmZ_` part of a CloudTrail file name, else
    the file's own modification time."""
    stamp = STAMP.search(os.path.basename(path))
    if stamp:
        t = datetime.datetime.strptime(stamp.group(1), "%Y%m%dT%H%M")
        return calendar.timegm(t.timetuple())
    return os.path.getmtime(path)


def write(con, rows, target, scratch):
    """Writes OCSF rows to one gzip-compressed Parquet file through duckdb."""
    with open(scratch, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")))
            f.write("\n")
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
    os.makedirs(os.path.dirname(target), exist_ok=True)
    con.execute(
        f"COPY (SELECT * FROM read_json({literal(scratch)}, format='newline_delimited', "
        f"columns={columns})) TO {literal(target)} (FORMAT PARQUET, COMPRESSION GZIP)"
    )


def literal(path):
    """A path as an SQL string literal (COPY takes no bound parameters for its target)."""
    return "'" + path.replace("'", "''") + "'"


def convert(archive, out):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    counts = {"files": 0, "records": 0, "parquet_files": 0, "not_a_source": 0}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = os.path.join(tmp, "rows.ndjson")
        for path in activity_files(archive):
            counts["files"] += 1
            delivered = delivery_time(path)
            groups = {}
            for record in read_records(path):
                counts["records"] += 1
                source = source_of(record)
                if source is None:
                    counts["not_a_source"] += 1
                    continue
                key = (source, record.get("awsRegion"), record.get("recipientAccountId"))
                groups.setdefault(key, []).append(ocsf(record))
            relative = os.path.relpath(path, archive)
            for (source, region, account), rows in sorted(groups.items()):
                newest = max(row["time"] for row in rows)
                day = datetime.datetime.fromtimestamp(newest / 1000, datetime.timezone.utc)
                name = uuid.uuid5(uuid.NAMESPACE_URL, f"{relative}#{source}")
                target = os.path.join(
                    out, "aws", source, SOURCE_VERSION, f"region={region}",
                    f"accountId={account}", f"eventDay={day:%Y%m%d}", f"{name}.gz.parquet",
                )
                write(con, rows, target, scratch)
                os.utime(target, (delivered, delivered))
                counts["parquet_files"] += 1
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", help="a CloudTrail archive (folder with AWSLogs/...)")
    parser.add_argument("out", help="where to write aws/<SOURCE>/2.0/...")
    args = parser.parse_args()
    counts = convert(args.archive, args.out)
    print(
        f"{counts['records']} records in {counts['files']} CloudTrail files -> "
        f"{counts['parquet_files']} Parquet files; {counts['not_a_source']} data events of "
        "services Security Lake does not collect left out",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
