//! Continuous mode (`trailsight watch`): follows a live trail.
//! The S3 source lists a trail's bucket for new log files.

pub mod s3;
