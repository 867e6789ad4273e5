#!/usr/bin/env python3
"""trailsight's aggregate job: a CloudTrail archive in, the per-minute aggregates out.

Reads a CloudTrail archive in S3 layout (a local folder, or s3a://bucket/prefix on a cluster;
gzip `{"Records":[...]}` files and JSON lines) and writes the three Parquet tables of the
aggregate contract (docs/scale-out.md, contract version 1), partitioned by delivery day:

    OUTPUT/series_minutes/delivery_day=YYYY-MM-DD/*.parquet   calls per series and minute
    OUTPUT/attributions/delivery_day=YYYY-MM-DD/*.parquet     who made the on-time calls
    OUTPUT/activity/delivery_day=YYYY-MM-DD/*.parquet         records of any kind per account/region
    OUTPUT/_trailsight_aggregates.json                        contract version and settings

`trailsight score --aggregates OUTPUT` then detects from them as `score` does from the archive.
The counting rules are trailsight's own (src/ingest/parse.rs, src/aggregate/mod.rs,
src/series/*.rs), written out in docs/scale-out.md; each rule below names its source.

Run locally (a local master with every core is used when not under spark-submit):

    python3 scale-out/spark/aggregate.py --input datasets/demo --output /tmp/demo-aggregates

On a cluster (EMR, Glue, any Spark 3.5+ or 4.x):

    spark-submit scale-out/spark/aggregate.py --input s3a://trail-bucket/AWSLogs/ \\
        --output s3a://analytics-bucket/trailsight-aggregates/

Re-running over the same delivery days replaces their partitions (dynamic partition overwrite);
other days are left alone, so new days can be added run by run (see "Incremental runs" in
docs/scale-out.md for what a run cannot know about the days before it).
"""

import argparse
import json
import os
import sys
import time

CONTRACT_VERSION = 1

# src/ingest/parse.rs: field limits (MAX_NAME_BYTES, MAX_ARN_BYTES, MAX_USER_AGENT_BYTES), the
# earliest credible eventTime (EARLIEST_EVENT_MINUTE, 2013-01-01T00:00Z) and how far after its
# file's delivery time a record may claim to be (MAX_MINUTES_AFTER_DELIVERY).
MAX_NAME_BYTES = 256
MAX_ARN_BYTES = 2048
MAX_USER_AGENT_BYTES = 1024
EARLIEST_EVENT_MINUTE = 22_616_640
MAX_MINUTES_AFTER_DELIVERY = 60

# The fields trailsight reads from a record (everything else is left unparsed).
RECORD_SCHEMA = (
    "eventTime STRING, eventSource STRING, eventName STRING, awsRegion STRING, "
    "recipientAccountId STRING, userIdentity STRUCT<arn: STRING, accountId: STRING>, "
    "readOnly BOOLEAN, managementEvent BOOLEAN, eventCategory STRING, eventType STRING, "
    "errorCode STRING, eventID STRING, userAgent STRING"
)

# src/ingest/parse.rs is_known_data_event: data events of records older than eventVersion 1.06,
# which say neither managementEvent nor eventCategory.
S3_OBJECT_EVENTS = [
    "AbortMultipartUpload", "CompleteMultipartUpload", "CopyObject", "CreateMultipartUpload",
    "DeleteObject", "DeleteObjects", "GetObject", "GetObjectAcl", "GetObjectAttributes",
    "GetObjectLegalHold", "GetObjectRetention", "GetObjectTagging", "GetObjectTorrent",
    "HeadObject", "ListMultipartUploads", "ListObjects", "ListObjectsV2", "ListObjectVersions",
    "ListParts", "PutObject", "PutObjectAcl", "PutObjectLegalHold", "PutObjectRetention",
    "PutObjectTagging", "DeleteObjectTagging", "RestoreObject", "SelectObjectContent",
    "UploadPart", "UploadPartCopy",
]

# File names taken (src/ingest/discover.rs LOG_SUFFIXES, without Security Lake's .parquet).
LOG_FILE = r"(?i)\.(json|jsonl|ndjson|gz)$"
# The delivery time in a CloudTrail file name: the first _YYYYMMDDTHHmmZ_ part.
DELIVERY_STAMP = r"_(\d{8}T\d{4})Z_"
# An S3-layout day folder: .../AWSLogs/.../YYYY/MM/DD/<file>.
DAY_FOLDER = r"/AWSLogs/(?:.*/)?(\d{4})/(\d{2})/(\d{2})/[^/]+$"


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Count a CloudTrail archive into trailsight's aggregate tables (Parquet).")
    p.add_argument("--input", required=True, action="append",
                   help="archive root (local path, file:// or s3a://); repeatable")
    p.add_argument("--output", required=True, help="where the aggregate tables go")
    p.add_argument("--allowed-lateness-minutes", type=int, default=15,
                   help="the detector profile's ingest.allowed_lateness_minutes (default 15): "
                        "decides which calls are late")
    p.add_argument("--master", default=None,
                   help="Spark master when run with plain python3 (default local[*]); "
                        "ignored under spark-submit")
    p.add_argument("--shuffle-partitions", type=int, default=None,
                   help="spark.sql.shuffle.partitions (default: 4 per core locally)")
    p.add_argument("--stats", default=None,
                   help="write the run's figures (records, seconds, bytes) as JSON to this local file")
    return p.parse_args(argv)


def spark_session(args):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("trailsight-aggregate")
    # spark-submit (and the pyspark shell) start the JVM first and say so in the environment;
    # plain python3 gets a local master.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = args.master or "local[*]"
        builder = builder.master(master)
        cores = os.cpu_count() or 1
        builder = builder.config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "2g"))
        builder = builder.config("spark.ui.enabled", "false")
        builder = builder.config("spark.sql.shuffle.partitions",
                                 str(args.shuffle_partitions or 4 * cores))
    elif args.shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
    spark = (
        builder
        # Minutes are UTC; timestamps are written as Parquet TIMESTAMP_MICROS (not INT96).
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # Bad values become null (and the record is skipped) instead of failing the job, under
        # Spark 3.5 and 4.x alike.
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.legacy.timeParserPolicy", "CORRECTED")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def records(spark, inputs):
    """Every record of every log file, with its file's path, delivery minute and day."""
    from pyspark.sql import functions as F

    files = (
        spark.read.option("recursiveFileLookup", "true")
        .option("wholetext", "true")
        .text(inputs)
        .select(F.col("_metadata.file_path").alias("path"), F.col("value").alias("content"))
    )
    path = F.col("path")
    # src/ingest/discover.rs: Digest and Insight folders are not API activity; in a tree with
    # AWSLogs/ the files outside it (labels, notes) are not logs; hidden files are skipped (Spark
    # skips names starting with '.' or '_' itself).
    files = files.where(
        path.rlike(LOG_FILE)
        & ~path.rlike(r"/CloudTrail-(Digest|Insight)/")
        & (path.contains("/AWSLogs/") | F.lit(not any_awslogs(spark, inputs)))
    )
    stamp = F.regexp_extract(F.element_at(F.split(path, "/"), -1), DELIVERY_STAMP, 1)
    delivery = F.when(
        stamp != "",
        F.floor(F.unix_timestamp(F.to_timestamp(stamp, "yyyyMMdd'T'HHmm")) / 60),
    ).cast("long")
    folder_day = F.when(
        path.rlike(DAY_FOLDER),
        F.to_date(F.concat_ws("-", *[F.regexp_extract(path, DAY_FOLDER, i) for i in (1, 2, 3)])),
    )
    day = F.coalesce(folder_day, F.to_date(F.timestamp_seconds(delivery * 60)))
    # The ingest key: the path from its AWSLogs/ component on, else the whole path.
    key = F.when(path.contains("/AWSLogs/"),
                 F.regexp_extract(path, r"(AWSLogs/.*)$", 1)).otherwise(path)
    files = files.select(
        "path", "content",
        delivery.alias("delivery_minute"),
        day.alias("day"),
        key.alias("ingest_key"),
    )
    content = F.col("content")
    records_doc = content.rlike(r'^\s*\{\s*"Records"\s*:')
    # {"Records":[...]}: one document per file.
    docs = files.where(records_doc).select(
        "path", "delivery_minute", "day", "ingest_key",
        F.explode(F.from_json(content, f"Records ARRAY<STRUCT<{RECORD_SCHEMA}>>").Records)
        .alias("r"),
    )
    # JSON lines: one record per non-empty line.
    lines = (
        files.where(~records_doc)
        .select("path", "delivery_minute", "day", "ingest_key",
                F.explode(F.split(content, "\n")).alias("line"))
        .where(F.trim(F.col("line")) != "")
        .select("path", "delivery_minute", "day", "ingest_key",
                F.from_json(F.col("line"), RECORD_SCHEMA).alias("r"))
        .where(F.col("r").isNotNull())
    )
    return docs.unionByName(lines)


def any_awslogs(spark, inputs):
    """Whether some input holds an AWSLogs/ folder (then files outside it are not logs)."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for text in inputs:
        if "/AWSLogs" in text or text.startswith("AWSLogs"):
            return True
        p = jvm.org.apache.hadoop.fs.Path(text)
        fs = p.getFileSystem(conf)
        if fs.exists(jvm.org.apache.hadoop.fs.Path(p, "AWSLogs")):
            return True
    return False


def validated(raw, now_minute):
    """src/ingest/parse.rs validate(): the records trailsight keeps, with the fields it reads.

    Insights, aggregated and network-activity events are left out; a record without eventTime,
    eventSource, eventName, awsRegion or an account, with a field too long, or with an eventTime
    that is not a valid UTC time in range is skipped as bad."""
    from pyspark.sql import functions as F

    r = F.col("r")

    def nonempty(c):
        return F.when(c != "", c)

    event_type = r.eventType
    category_text = r.eventCategory
    ignored = (
        (event_type == "AwsCloudTrailInsight") | (category_text == "Insight")
        | (event_type == "AwsAggregatedEvent")
        | (event_type == "AwsVpceEvent") | (category_text == "NetworkActivity")
    )
    account = F.coalesce(nonempty(r.recipientAccountId), nonempty(r.userIdentity.accountId))
    t = r.eventTime
    # The UTC forms CloudTrail writes: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00|-00:00); second
    # 60 (a leap second) belongs to its minute. Invalid dates (February 30) parse to null.
    fixed = t.rlike(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:(\d{2})(\.\d+)?(Z|[+-]00:00)$") & (
        F.substring(t, 18, 2).cast("int") <= 60)
    fixed_minute = F.floor(
        F.unix_timestamp(F.to_timestamp(F.substring(t, 1, 16), "yyyy-MM-dd'T'HH:mm")) / 60)
    # Any other RFC 3339 time (another offset): parsed whole.
    other_minute = F.floor(
        F.unix_timestamp(F.to_timestamp(t, "yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XXX")) / 60)
    minute = F.when(fixed, fixed_minute).otherwise(other_minute).cast("long")
    byte_len = F.octet_length
    ua = r.userAgent
    ua_cut = F.when(
        byte_len(ua) > MAX_USER_AGENT_BYTES,
        # Cut on a character boundary: a character cut in two decodes to U+FFFD, dropped.
        F.regexp_replace(
            F.decode(F.substring(F.encode(ua, "UTF-8"), 1, MAX_USER_AGENT_BYTES), "UTF-8"),
            "\uFFFD+$", ""),
    ).otherwise(ua)
    management = r.managementEvent
    category = (
        F.when(management == True, F.lit("Management"))  # noqa: E712 (a Column, not a bool)
        .when(management.isNull() & (category_text == "Management"), F.lit("Management"))
        .when((management == False) & (category_text.isNull() | (category_text == "Data")),  # noqa: E712
              F.lit("Data"))
        .when(management.isNull() & (category_text == "Data"), F.lit("Data"))
        .when(category_text.isNotNull(), F.lit(None))
        .when((r.eventSource == "s3.amazonaws.com") & r.eventName.isin(S3_OBJECT_EVENTS),
              F.lit("Data"))
        .when((r.eventSource == "lambda.amazonaws.com") & (r.eventName == "Invoke"),
              F.lit("Data"))
        .otherwise(F.lit("Management"))
    )
    rows = raw.where(~F.coalesce(ignored, F.lit(False))).select(
        "path", "delivery_minute", "day", "ingest_key",
        minute.alias("minute"),
        account.alias("account"),
        r.awsRegion.alias("region"),
        r.eventSource.alias("event_source"),
        r.eventName.alias("event_name"),
        nonempty(r.errorCode).alias("error_code"),
        nonempty(r.userIdentity.arn).alias("arn"),
        ua_cut.alias("user_agent"),
        r.readOnly.alias("read_only"),
        category.alias("category"),
        nonempty(r.eventID).alias("event_id"),
    )
    c = F.col
    good = (
        (c("event_source") != "") & (c("event_name") != "") & (c("region") != "")
        & c("account").isNotNull() & c("minute").isNotNull()
        & (byte_len(c("event_source")) <= MAX_NAME_BYTES)
        & (byte_len(c("event_name")) <= MAX_NAME_BYTES)
        & (byte_len(c("region")) <= MAX_NAME_BYTES)
        & (byte_len(c("account")) <= MAX_NAME_BYTES)
        & F.coalesce(byte_len(c("error_code")) <= MAX_NAME_BYTES, F.lit(True))
        & F.coalesce(byte_len(c("event_id")) <= MAX_NAME_BYTES, F.lit(True))
        & F.coalesce(byte_len(c("arn")) <= MAX_ARN_BYTES, F.lit(True))
        & (c("minute") >= EARLIEST_EVENT_MINUTE) & (c("minute") <= now_minute)
        & F.coalesce(c("minute") <= c("delivery_minute") + MAX_MINUTES_AFTER_DELIVERY,
                     F.lit(True))
    )
    return rows.where(F.coalesce(good, F.lit(False)))


def aggregate(spark, args):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    now_minute = int(time.time()) // 60 + 1440
    recs = validated(records(spark, args.input), now_minute).cache()

    # The order trailsight reads files in (src/ingest/discover.rs): delivery day (the S3 day
    # folder), then delivery minute (undated first), then ingest key.
    files = recs.groupBy("path", "delivery_minute", "day", "ingest_key").agg(
        F.max("minute").alias("file_max"))
    order = Window.orderBy(F.col("day").asc_nulls_first(),
                           F.col("delivery_minute").asc_nulls_first(),
                           F.col("ingest_key"), F.col("path"))
    # Finality moves file by file (src/pipeline/mod.rs Engine::absorb): a file's calls for
    # minutes before (newest eventTime of the files read before it) + 1 - allowed lateness
    # are late.
    before = order.rowsBetween(Window.unboundedPreceding, -1)
    files = files.select(
        "path", "day",
        F.row_number().over(order).alias("file_index"),
        (F.max("file_max").over(before) + 1 - args.allowed_lateness_minutes).alias("final_before"),
    )
    recs = recs.join(F.broadcast(files.select("path", "file_index", "final_before")), "path")
    late_at = F.when(F.col("minute") < F.col("final_before"), F.col("final_before"))
    minute_ts = F.timestamp_seconds(F.col("minute") * 60)
    late_ts = F.timestamp_seconds(late_at * 60)
    delivery_day = F.coalesce(F.date_format("day", "yyyy-MM-dd"), F.lit("undated"))

    # The heartbeat: every kept record, repeated deliveries included (src/aggregate/mod.rs
    # FileDigest::push counts it before anything is dropped).
    activity = recs.groupBy(
        delivery_day.alias("delivery_day"), minute_ts.alias("minute"), "account", "region",
        late_ts.alias("late_at"),
    ).agg(F.count(F.lit(1)).alias("records"))

    # Counted calls (src/series/calls.rs, errors.rs): management or data events that are writes
    # (readOnly false) or carry an errorCode; a repeated eventID counts once, in the first file
    # read (src/aggregate/mod.rs Aggregator::is_repeat).
    counted = recs.where(F.col("category").isNotNull()
                         & ((F.col("read_only") == False) | F.col("error_code").isNotNull()))  # noqa: E712
    first = Window.partitionBy("event_id").orderBy("file_index")
    counted = counted.withColumn(
        "n", F.when(F.col("event_id").isNotNull(), F.row_number().over(first)).otherwise(1)
    ).where(F.col("n") == 1)
    calls = counted.where(F.col("read_only") == False).select(  # noqa: E712
        "*", F.lit("ApiCallRateInsight").alias("insight_type"),
        F.lit(None).cast("string").alias("series_error_code"))
    errors = counted.where(F.col("error_code").isNotNull()).select(
        "*", F.lit("ApiErrorRateInsight").alias("insight_type"),
        F.col("error_code").alias("series_error_code"))
    series = calls.unionByName(errors).select(
        delivery_day.alias("delivery_day"), minute_ts.alias("minute"), "account", "region",
        "event_source", "event_name", F.col("series_error_code").alias("error_code"),
        "category", "insight_type", late_ts.alias("late_at"),
        "arn", "user_agent", F.col("error_code").alias("call_error_code"),
    ).cache()
    key = ["delivery_day", "minute", "account", "region", "event_source", "event_name",
           "error_code", "category", "insight_type"]
    series_minutes = series.groupBy(*key, "late_at").agg(F.count(F.lit(1)).alias("calls"))

    # Who made the on-time calls (late calls reach history as counts only): userIdentity.arn
    # and userAgent when present, and for call rates the errorCode, "null" for a success.
    on_time = series.where(F.col("late_at").isNull())
    values = F.array(
        F.struct(F.lit("userIdentityArn").alias("attribute"), F.col("arn").alias("value")),
        F.struct(F.lit("userAgent").alias("attribute"), F.col("user_agent").alias("value")),
        F.struct(F.lit("errorCode").alias("attribute"),
                 F.when(F.col("insight_type") == "ApiCallRateInsight",
                        F.coalesce(F.col("call_error_code"), F.lit("null"))).alias("value")),
    )
    attributions = (
        on_time.select(*key, F.explode(values).alias("a"))
        .where(F.col("a.value").isNotNull())
        .groupBy(*key, F.col("a.attribute").alias("attribute"), F.col("a.value").alias("value"))
        .agg(F.count(F.lit(1)).alias("count"))
    )

    out = args.output.rstrip("/")
    tables = {
        "series_minutes": series_minutes,
        "attributions": attributions,
        "activity": activity,
    }
    for name, table in tables.items():
        (table.repartition("delivery_day")
         .sortWithinPartitions("minute")
         .write.mode("overwrite")
         .partitionBy("delivery_day")
         .parquet(f"{out}/{name}"))
    write_manifest(spark, out, args)
    totals = recs.agg(F.count(F.lit(1)).alias("records")).first()
    return {"records": int(totals["records"])}


def write_manifest(spark, out, args):
    """OUTPUT/_trailsight_aggregates.json: what `score --aggregates` checks before reading."""
    manifest = {
        "contract": "trailsight-aggregates",
        "contract_version": CONTRACT_VERSION,
        "allowed_lateness_minutes": args.allowed_lateness_minutes,
        "written_by": "scale-out/spark/aggregate.py",
    }
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(f"{out}/_trailsight_aggregates.json")
    stream = path.getFileSystem(conf).create(path, True)
    try:
        stream.write(bytearray((json.dumps(manifest, indent=2) + "\n").encode()))
    finally:
        stream.close()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.allowed_lateness_minutes < 0:
        sys.exit("aggregate.py: --allowed-lateness-minutes must be at least 0")
    inputs = [os.path.abspath(i) if "://" not in i else i for i in args.input]
    args.input = inputs
    started = time.time()
    spark = spark_session(args)
    try:
        figures = aggregate(spark, args)
    finally:
        spark.stop()
    figures["seconds"] = round(time.time() - started, 3)
    print(f"aggregate.py: {figures['records']} records aggregated into {args.output} "
          f"in {figures['seconds']} s", file=sys.stderr)
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(figures, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
