-- The aggregates of the delivery days chosen in views.sql, into the tables of ddl.sql.
-- Athena adds at most 100 partitions per INSERT INTO: aggregate at most 100 days at a time.

INSERT INTO trailsight_series_minutes
SELECT
  CAST(from_unixtime(minute * 60) AS timestamp) AS minute,
  account, region, event_source, event_name, series_error_code AS error_code, category,
  insight_type,
  CAST(from_unixtime(late_minute * 60) AS timestamp) AS late_at,
  count(*) AS calls,
  delivery_day
FROM trailsight_calls
GROUP BY delivery_day, minute, account, region, event_source, event_name, series_error_code,
         category, insight_type, late_minute;

INSERT INTO trailsight_attributions
SELECT
  CAST(from_unixtime(minute * 60) AS timestamp) AS minute,
  account, region, event_source, event_name, series_error_code AS error_code, category,
  insight_type, attribute, value, count(*) AS "count", delivery_day
FROM (
  SELECT c.*, 'userIdentityArn' AS attribute, arn AS value FROM trailsight_calls c
  WHERE late_minute IS NULL
  UNION ALL
  SELECT c.*, 'userAgent' AS attribute, user_agent AS value FROM trailsight_calls c
  WHERE late_minute IS NULL
  UNION ALL
  SELECT c.*, 'errorCode' AS attribute, coalesce(error_code, 'null') AS value
  FROM trailsight_calls c
  WHERE late_minute IS NULL AND insight_type = 'ApiCallRateInsight'
) w
WHERE value IS NOT NULL
GROUP BY delivery_day, minute, account, region, event_source, event_name, series_error_code,
         category, insight_type, attribute, value;

INSERT INTO trailsight_activity
SELECT
  CAST(from_unixtime(minute * 60) AS timestamp) AS minute,
  account, region,
  CAST(from_unixtime(late_minute * 60) AS timestamp) AS late_at,
  count(*) AS records,
  delivery_day
FROM trailsight_records
GROUP BY delivery_day, minute, account, region, late_minute;
