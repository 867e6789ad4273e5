//! One synthetic CloudTrail record and its JSON form. Records are serialised straight from
//! borrowed parts (catalogue, identity, a few drawn numbers) into the delivery buffer, with no
//! intermediate `serde_json::Value` and no per-record allocation.

use std::cell::Cell;

use serde::ser::{Error as _, SerializeMap, SerializeStruct, Serializer};
use serde::Serialize;

use crate::generate::catalogue::{
    mix64, ApiSpec, ErrorSpec, Identity, IdentityKind, Message, Template, Val,
};

/// An `eventTime` as CloudTrail writes it: `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventTime(pub [u8; 20]);

impl EventTime {
    /// The time at second 00 of a minute, from its `format_event_time` form.
    pub(crate) fn of_minute(formatted: &str) -> EventTime {
        let mut out = *b"1970-01-01T00:00:00Z";
        let bytes = formatted.as_bytes();
        if bytes.len() == 20 {
            out.copy_from_slice(bytes);
        }
        EventTime(out)
    }

    /// The same minute at `second` (0..60).
    pub(crate) fn at_second(self, second: u8) -> EventTime {
        let mut out = self.0;
        out[17] = b'0' + (second / 10) % 10;
        out[18] = b'0' + second % 10;
        EventTime(out)
    }

    /// The start of the hour (role sessions are refreshed hourly).
    pub(crate) fn hour_start(self) -> EventTime {
        let mut out = self.0;
        out[14..16].copy_from_slice(b"00");
        out[17..19].copy_from_slice(b"00");
        EventTime(out)
    }

    fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }
}

impl Serialize for EventTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str().map_err(S::Error::custom)?)
    }
}

/// One API call, ready to be written as a CloudTrail record.
pub(crate) struct Call<'a> {
    pub api: &'a ApiSpec,
    pub identity: &'a Identity,
    pub user_agent: &'a str,
    pub source_ip: &'a str,
    pub account: &'a str,
    pub region: &'a str,
    pub time: EventTime,
    pub error: Option<&'a ErrorSpec>,
    pub request_id: u128,
    pub event_id: [u8; 16],
    /// Seed of every random value inside requestParameters/responseElements.
    pub param_seed: u64,
    /// Delivered late: carries an `addendum` with reason `DELIVERY_DELAY`.
    pub late: bool,
}

impl Call<'_> {
    fn is_aws_internal(&self) -> bool {
        self.source_ip.ends_with(".amazonaws.com") || self.source_ip == "AWS Internal"
    }
}

/// Random values of templates, derived from the record's own seed.
struct Ctx<'a> {
    account: &'a str,
    region: &'a str,
    state: Cell<u64>,
}

impl Ctx<'_> {
    fn next(&self) -> u64 {
        let v = mix64(self.state.get());
        self.state.set(v);
        v
    }
}

struct TemplateView<'a> {
    fields: Template,
    ctx: &'a Ctx<'a>,
}

impl Serialize for TemplateView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, val) in self.fields {
            map.serialize_entry(key, &ValView { val, ctx: self.ctx })?;
        }
        map.end()
    }
}

struct ValView<'a> {
    val: &'a Val,
    ctx: &'a Ctx<'a>,
}

fn pick<'s>(list: &[&'s str], r: u64) -> &'s str {
    if list.is_empty() {
        return "";
    }
    list.get((r % list.len() as u64) as usize)
        .copied()
        .unwrap_or("")
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Serialize for ValView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ctx = self.ctx;
        match self.val {
            Val::Str(s) => serializer.serialize_str(s),
            Val::Pick(list) => serializer.serialize_str(pick(list, ctx.next())),
            Val::Hex(prefix, digits) => {
                let mut buf = [0u8; 160];
                let p = prefix.len().min(60);
                buf[..p].copy_from_slice(&prefix.as_bytes()[..p]);
                let n = usize::from(*digits).min(96);
                let mut r = 0u64;
                for i in 0..n {
                    if i % 16 == 0 {
                        r = ctx.next();
                    }
                    buf[p + i] = HEX[((r >> ((i % 16) * 4)) & 15) as usize];
                }
                serializer
                    .serialize_str(std::str::from_utf8(&buf[..p + n]).map_err(S::Error::custom)?)
            }
            Val::Int(lo, hi) => {
                let span = u64::from(hi.saturating_sub(*lo)) + 1;
                serializer.serialize_u64(u64::from(*lo) + ctx.next() % span)
            }
            Val::Bool(b) => serializer.serialize_bool(*b),
            Val::Null => serializer.serialize_unit(),
            Val::Account => serializer.serialize_str(ctx.account),
            Val::IamArn(kind, names) => serializer.collect_str(&format_args!(
                "arn:aws:iam::{}:{}/{}",
                ctx.account,
                kind,
                pick(names, ctx.next())
            )),
            Val::Arn(service, prefix, names) => serializer.collect_str(&format_args!(
                "arn:aws:{}:{}:{}:{}{}",
                service,
                ctx.region,
                ctx.account,
                prefix,
                pick(names, ctx.next())
            )),
            Val::Obj(fields) => TemplateView { fields, ctx }.serialize(serializer),
            Val::Items(fields) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("items", &[TemplateView { fields, ctx }])?;
                map.end()
            }
            Val::Uuid => {
                let hi = ctx.next();
                let lo = ctx.next();
                let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_le_bytes();
                uuid::Builder::from_random_bytes(bytes)
                    .into_uuid()
                    .serialize(serializer)
            }
        }
    }
}

/// `userIdentity` of one call.
struct IdentityView<'a> {
    identity: &'a Identity,
    created: EventTime,
}

struct SessionContext<'a>(&'a IdentityView<'a>);
struct SessionIssuer<'a>(&'a Identity);
struct SessionAttributes<'a>(&'a IdentityView<'a>);
struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

impl Serialize for SessionIssuer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let id = self.0;
        if id.kind != IdentityKind::AssumedRole {
            return EmptyObject.serialize(serializer);
        }
        let mut s = serializer.serialize_struct("sessionIssuer", 5)?;
        s.serialize_field("type", "Role")?;
        s.serialize_field("principalId", &id.role_id)?;
        s.serialize_field("arn", &id.role_arn)?;
        s.serialize_field("accountId", &id.account)?;
        s.serialize_field("userName", id.role_name)?;
        s.end()
    }
}

impl Serialize for SessionAttributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("attributes", 2)?;
        s.serialize_field("creationDate", &self.0.created)?;
        s.serialize_field(
            "mfaAuthenticated",
            if self.0.identity.mfa { "true" } else { "false" },
        )?;
        s.end()
    }
}

impl Serialize for SessionContext<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("sessionContext", 3)?;
        s.serialize_field("sessionIssuer", &SessionIssuer(self.0.identity))?;
        s.serialize_field("webIdFederationData", &EmptyObject)?;
        s.serialize_field("attributes", &SessionAttributes(self.0))?;
        s.end()
    }
}

impl Serialize for IdentityView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let id = self.identity;
        let mut s = serializer.serialize_struct("userIdentity", 8)?;
        match id.kind {
            IdentityKind::AwsService => {
                s.serialize_field("type", "AWSService")?;
                s.serialize_field("invokedBy", &id.invoked_by)?;
                return s.end();
            }
            IdentityKind::IamUser => s.serialize_field("type", "IAMUser")?,
            IdentityKind::AssumedRole => s.serialize_field("type", "AssumedRole")?,
        }
        s.serialize_field("principalId", &id.principal_id)?;
        s.serialize_field("arn", &id.arn)?;
        s.serialize_field("accountId", &id.account)?;
        s.serialize_field("accessKeyId", &id.access_key_id)?;
        if id.kind == IdentityKind::IamUser {
            s.serialize_field("userName", id.user_name)?;
        }
        if id.has_session {
            s.serialize_field("sessionContext", &SessionContext(self))?;
        }
        if let Some(by) = id.invoked_by {
            s.serialize_field("invokedBy", by)?;
        }
        s.end()
    }
}

/// `requestID`: S3 writes 16 uppercase characters, other services a UUID.
struct RequestId {
    value: u128,
    s3: bool,
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.s3 {
            const ALNUM: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            let mut buf = [0u8; 16];
            let mut v = self.value;
            for b in &mut buf {
                *b = ALNUM[(v % 36) as usize];
                v /= 36;
            }
            serializer.serialize_str(std::str::from_utf8(&buf).map_err(S::Error::custom)?)
        } else {
            uuid::Builder::from_random_bytes(self.value.to_le_bytes())
                .into_uuid()
                .serialize(serializer)
        }
    }
}

struct ErrorMessage<'a>(&'a Call<'a>, &'a ErrorSpec);

impl Serialize for ErrorMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let call = self.0;
        match self.1.message {
            Message::Text(text) => serializer.serialize_str(text),
            Message::Denied(prefix) => {
                let svc = call.api.service();
                let name = call.api.name;
                serializer.collect_str(&format_args!(
                    "{prefix}User: {} is not authorized to perform: {svc}:{name} because no identity-based policy allows the {svc}:{name} action",
                    call.identity.arn
                ))
            }
        }
    }
}

struct TlsDetails<'a>(&'a Call<'a>);

impl Serialize for TlsDetails<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let call = self.0;
        let mut s = serializer.serialize_struct("tlsDetails", 3)?;
        s.serialize_field("tlsVersion", "TLSv1.3")?;
        s.serialize_field("cipherSuite", "TLS_AES_128_GCM_SHA256")?;
        let svc = call.api.service();
        if call.api.global || svc == "s3" {
            s.serialize_field(
                "clientProvidedHostHeader",
                &format_args!("{svc}.amazonaws.com"),
            )?;
        } else {
            s.serialize_field(
                "clientProvidedHostHeader",
                &format_args!("{svc}.{}.amazonaws.com", call.region),
            )?;
        }
        s.end()
    }
}

struct Addendum;

impl Serialize for Addendum {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("addendum", 4)?;
        s.serialize_field("reason", "DELIVERY_DELAY")?;
        s.serialize_field("updatedFields", &())?;
        s.serialize_field("originalRequestID", &())?;
        s.serialize_field("originalEventID", &())?;
        s.end()
    }
}

impl Serialize for Call<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let api = self.api;
        let ctx = Ctx {
            account: self.account,
            region: self.region,
            state: Cell::new(self.param_seed),
        };
        let mut s = serializer.serialize_struct("Record", 24)?;
        s.serialize_field("eventVersion", api.event_version)?;
        s.serialize_field(
            "userIdentity",
            &IdentityView {
                identity: self.identity,
                created: self.time.hour_start(),
            },
        )?;
        s.serialize_field("eventTime", &self.time)?;
        s.serialize_field("eventSource", api.source)?;
        s.serialize_field("eventName", api.name)?;
        s.serialize_field("awsRegion", self.region)?;
        s.serialize_field("sourceIPAddress", self.source_ip)?;
        s.serialize_field("userAgent", self.user_agent)?;
        if let Some(error) = self.error {
            s.serialize_field("errorCode", error.code)?;
            s.serialize_field("errorMessage", &ErrorMessage(self, error))?;
        }
        s.serialize_field(
            "requestParameters",
            &TemplateView {
                fields: api.request,
                ctx: &ctx,
            },
        )?;
        match (api.response, self.error) {
            (Some(fields), None) => {
                s.serialize_field("responseElements", &TemplateView { fields, ctx: &ctx })?
            }
            _ => s.serialize_field("responseElements", &())?,
        }
        if let Some(fields) = api.additional {
            s.serialize_field("additionalEventData", &TemplateView { fields, ctx: &ctx })?;
        }
        s.serialize_field(
            "requestID",
            &RequestId {
                value: self.request_id,
                s3: api.service() == "s3",
            },
        )?;
        s.serialize_field(
            "eventID",
            &uuid::Builder::from_random_bytes(self.event_id).into_uuid(),
        )?;
        s.serialize_field("readOnly", &api.read_only)?;
        s.serialize_field("eventType", "AwsApiCall")?;
        s.serialize_field("managementEvent", &true)?;
        s.serialize_field("recipientAccountId", self.account)?;
        s.serialize_field("eventCategory", "Management")?;
        if !self.is_aws_internal() {
            s.serialize_field("tlsDetails", &TlsDetails(self))?;
        }
        if self.late {
            s.serialize_field("addendum", &Addendum)?;
        }
        s.end()
    }
}
