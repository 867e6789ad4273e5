-- trailsight's counting rules (docs/scale-out.md) over AWS's standard CloudTrail table with
-- partition projection (https://docs.aws.amazon.com/athena/latest/ug/create-cloudtrail-table-partition-projection.html),
-- here named cloudtrail_logs_pp, its partition column "timestamp" being the delivery day folder
-- (yyyy/MM/dd). Edit the day range in trailsight_records (the delivery days to aggregate) and
-- the allowed lateness (15, the profile's ingest.allowed_lateness_minutes) if yours differs.
-- Then run insert.sql. AWS's table has no managementEvent column: the event category comes
-- from eventCategory (records since eventVersion 1.07 have it).

CREATE OR REPLACE VIEW trailsight_records AS
WITH raw AS (
  SELECT
    "$path" AS path,
    "timestamp" AS folder_day,
    eventtime, eventsource, eventname, awsregion, recipientaccountid,
    useridentity.arn AS arn, useridentity.accountid AS identity_account,
    readonly, eventcategory, eventtype, errorcode, eventid, useragent
  FROM cloudtrail_logs_pp
  WHERE "timestamp" BETWEEN '2024/03/04' AND '2024/03/13'
),
parsed AS (
  SELECT
    path,
    folder_day,
    CAST(floor(to_unixtime(try(date_parse(
      regexp_extract(path, '_([0-9]{8}T[0-9]{4})Z_[^/]*$', 1), '%Y%m%dT%H%i'))) / 60) AS bigint)
      AS delivery_minute,
    coalesce(regexp_extract(path, '(AWSLogs/.*)$', 1), path) AS ingest_key,
    CASE WHEN regexp_like(eventtime,
      '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$')
      THEN CAST(floor(to_unixtime(try(from_iso8601_timestamp(eventtime))) / 60) AS bigint)
    END AS minute,
    coalesce(nullif(recipientaccountid, ''), nullif(identity_account, '')) AS account,
    awsregion AS region,
    eventsource AS event_source,
    eventname AS event_name,
    nullif(errorcode, '') AS error_code,
    nullif(arn, '') AS arn,
    CASE WHEN length(to_utf8(useragent)) > 1024
      THEN regexp_replace(from_utf8(substr(to_utf8(useragent), 1, 1024)), '\x{FFFD}+$', '')
      ELSE useragent END AS user_agent,
    readonly,
    CASE
      WHEN eventcategory = 'Management' THEN 'Management'
      WHEN eventcategory = 'Data' THEN 'Data'
      WHEN eventcategory IS NOT NULL THEN NULL
      WHEN eventsource = 's3.amazonaws.com' AND eventname IN (
        'AbortMultipartUpload', 'CompleteMultipartUpload', 'CopyObject', 'CreateMultipartUpload',
        'DeleteObject', 'DeleteObjects', 'GetObject', 'GetObjectAcl', 'GetObjectAttributes',
        'GetObjectLegalHold', 'GetObjectRetention', 'GetObjectTagging', 'GetObjectTorrent',
        'HeadObject', 'ListMultipartUploads', 'ListObjects', 'ListObjectsV2', 'ListObjectVersions',
        'ListParts', 'PutObject', 'PutObjectAcl', 'PutObjectLegalHold', 'PutObjectRetention',
        'PutObjectTagging', 'DeleteObjectTagging', 'RestoreObject', 'SelectObjectContent',
        'UploadPart', 'UploadPartCopy') THEN 'Data'
      WHEN eventsource = 'lambda.amazonaws.com' AND eventname = 'Invoke' THEN 'Data'
      ELSE 'Management'
    END AS category,
    nullif(eventid, '') AS event_id
  FROM raw
  -- Insights, aggregated and network-activity events are not API activity.
  WHERE NOT coalesce(eventtype IN ('AwsCloudTrailInsight', 'AwsAggregatedEvent', 'AwsVpceEvent')
                     OR eventcategory IN ('Insight', 'NetworkActivity'), false)
),
valid AS (
  SELECT * FROM parsed
  WHERE coalesce(event_source <> '' AND event_name <> '' AND region <> ''
    AND account IS NOT NULL AND minute IS NOT NULL
    AND length(to_utf8(event_source)) <= 256 AND length(to_utf8(event_name)) <= 256
    AND length(to_utf8(region)) <= 256 AND length(to_utf8(account)) <= 256
    AND coalesce(length(to_utf8(error_code)) <= 256, true)
    AND coalesce(length(to_utf8(event_id)) <= 256, true)
    AND coalesce(length(to_utf8(arn)) <= 2048, true)
    AND minute >= 22616640
    AND minute <= CAST(floor(to_unixtime(current_timestamp) / 60) AS bigint) + 1440
    AND coalesce(minute <= delivery_minute + 60, true), false)
),
files AS (
  SELECT path, folder_day, delivery_minute, ingest_key, max(minute) AS file_max
  FROM valid
  GROUP BY path, folder_day, delivery_minute, ingest_key
),
ordered AS (
  SELECT
    path,
    row_number() OVER (ORDER BY folder_day NULLS FIRST, delivery_minute NULLS FIRST,
                       ingest_key, path) AS file_index,
    max(file_max) OVER (ORDER BY folder_day NULLS FIRST, delivery_minute NULLS FIRST,
                        ingest_key, path
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 1 - 15 AS final_before
  FROM files
)
SELECT
  v.*,
  o.file_index,
  CASE WHEN v.minute < o.final_before THEN o.final_before END AS late_minute,
  coalesce(replace(v.folder_day, '/', '-'), 'undated') AS delivery_day
FROM valid v
JOIN ordered o ON v.path = o.path;

-- Counted calls, one row per series a call counts towards: write calls (readOnly false) and
-- calls with an errorCode, of management or data events, each eventID once (its first file).
CREATE OR REPLACE VIEW trailsight_calls AS
WITH counted AS (
  SELECT *
  FROM (
    SELECT r.*,
      CASE WHEN event_id IS NULL THEN 1
           ELSE row_number() OVER (PARTITION BY event_id ORDER BY file_index) END AS n
    FROM trailsight_records r
    WHERE category IS NOT NULL AND (readonly = 'false' OR error_code IS NOT NULL)
  ) d
  WHERE n = 1
)
SELECT delivery_day, minute, account, region, event_source, event_name,
       CAST(NULL AS varchar) AS series_error_code, category,
       'ApiCallRateInsight' AS insight_type, late_minute, arn, user_agent, error_code
FROM counted WHERE readonly = 'false'
UNION ALL
SELECT delivery_day, minute, account, region, event_source, event_name,
       error_code AS series_error_code, category,
       'ApiErrorRateInsight' AS insight_type, late_minute, arn, user_agent, error_code
FROM counted WHERE error_code IS NOT NULL;
