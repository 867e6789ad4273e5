-- trailsight aggregate tables (docs/scale-out.md, contract version 1) in Athena / Trino.
-- Replace s3://amzn-s3-demo-bucket/trailsight-aggregates/ with where they go. The Spark job
-- (scale-out/spark/aggregate.py) writes the same layout, so these tables also read its output.

CREATE EXTERNAL TABLE IF NOT EXISTS trailsight_series_minutes (
  `minute`      timestamp COMMENT 'UTC minute of eventTime',
  account       string    COMMENT 'recipientAccountId, else userIdentity.accountId',
  region        string    COMMENT 'awsRegion',
  event_source  string,
  event_name    string,
  error_code    string    COMMENT 'null for a call-rate series',
  category      string    COMMENT 'Management or Data',
  insight_type  string    COMMENT 'ApiCallRateInsight or ApiErrorRateInsight',
  late_at       timestamp COMMENT 'null: on time; else every minute before it was final when these calls came',
  calls         bigint
)
PARTITIONED BY (delivery_day string)
STORED AS PARQUET
LOCATION 's3://amzn-s3-demo-bucket/trailsight-aggregates/series_minutes/';

CREATE EXTERNAL TABLE IF NOT EXISTS trailsight_attributions (
  `minute`      timestamp,
  account       string,
  region        string,
  event_source  string,
  event_name    string,
  error_code    string,
  category      string,
  insight_type  string,
  attribute     string    COMMENT 'userIdentityArn, userAgent, errorCode (call rates only)',
  value         string,
  `count`       bigint    COMMENT 'on-time calls of the series in the minute with this value'
)
PARTITIONED BY (delivery_day string)
STORED AS PARQUET
LOCATION 's3://amzn-s3-demo-bucket/trailsight-aggregates/attributions/';

CREATE EXTERNAL TABLE IF NOT EXISTS trailsight_activity (
  `minute`      timestamp,
  account       string,
  region        string,
  late_at       timestamp,
  records       bigint    COMMENT 'records of any kind (the trail heartbeat), repeated deliveries included'
)
PARTITIONED BY (delivery_day string)
STORED AS PARQUET
LOCATION 's3://amzn-s3-demo-bucket/trailsight-aggregates/activity/';

-- After INSERT INTO (which adds partitions itself) nothing more is needed; after the Spark job
-- wrote new days, load their partitions with:
--   MSCK REPAIR TABLE trailsight_series_minutes;
--   MSCK REPAIR TABLE trailsight_attributions;
--   MSCK REPAIR TABLE trailsight_activity;
