//! The static world the generator simulates: the accounts and regions, the identities that call
//! APIs (roles, users, services, each with its user agents and source IP), and the catalogue of
//! APIs with their rates, rhythms, error codes, callers and request/response shapes.

use crate::series::Minute;

/// The account-regions of the synthetic trail: (account, region, multiplier of every catalogue rate).
pub(crate) const ACCOUNT_REGIONS: [(&str, &str, f64); 3] = [
    ("418295730164", "us-east-1", 1.0),
    ("418295730164", "eu-west-1", 0.5),
    ("730514962288", "us-east-1", 0.6),
];

/// The region where global services (IAM) log their calls.
pub(crate) const GLOBAL_REGION: &str = "us-east-1";

/// How a rate varies over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rhythm {
    /// Machines: the same rate around the clock, every day.
    Flat,
    /// People and their CI: high in UTC business hours (08-18), low at night, ~0.3x on weekends.
    /// The catalogue rate is the weekday midday peak.
    Office,
}

/// Who makes a call. Each account has one identity of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Who {
    EcsAgent,
    SsmAgent,
    LifecycleHook,
    GithubDeploy,
    Alice,
    Bob,
    SsoAdmin,
    Datadog,
    ConfigService,
    OrderLambda,
    AutoScalingService,
    EcsServiceRole,
    /// Never calls in the background: the intruder of `rare_api_burst`.
    Intruder,
    /// Never calls in the background: the contractor account abused in `new_api`.
    Contractor,
}

/// The principal behind an identity, as `userIdentity.type` tells it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Principal {
    /// `IAMUser`; `console` users carry a session context (MFA, temporary key).
    User { name: &'static str, console: bool },
    /// `AssumedRole` on `path` + `role`, session `session`, optionally through a service.
    Role {
        role: &'static str,
        path: &'static str,
        session: &'static str,
        invoked_by: Option<&'static str>,
    },
    /// `AWSService`: a service acting on its own.
    Service { service: &'static str },
}

/// The static description of an identity.
pub(crate) struct IdentitySpec {
    pub who: Who,
    pub principal: Principal,
    pub user_agents: &'static [&'static str],
    pub source_ip: &'static str,
}

const UA_TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.7.4 (+https://www.terraform.io) terraform-provider-aws/5.39.1 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.25.2 os/linux lang/go#1.21.7 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.149.1";
const UA_CLI_DEPLOY: &str = "aws-cli/2.15.17 Python/3.11.6 Linux/6.5.0-1015-azure exe/x86_64.ubuntu.22 prompt/off command/cloudformation.deploy";
const UA_CLI_ALICE: &str =
    "aws-cli/2.15.30 Python/3.11.8 Darwin/23.3.0 exe/x86_64 prompt/off command/ec2.describe-instances";
const UA_BOTO_ALICE: &str = "Boto3/1.34.51 md/Botocore#1.34.51 ua/2.0 os/macos#23.3.0 md/arch#arm64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.51";
const UA_CONSOLE: &str = "console.amazonaws.com";
const UA_CONSOLE_EC2: &str = "console.ec2.amazonaws.com";
const UA_BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36";
const UA_LAMBDA: &str = "Boto3/1.34.34 md/Botocore#1.34.34 ua/2.0 os/linux#5.10.209-219.812.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.34";

/// Every identity of an account, in [`Who`] order.
pub(crate) const IDENTITIES: [IdentitySpec; 14] = [
    IdentitySpec {
        who: Who::EcsAgent,
        principal: Principal::Role {
            role: "ecsInstanceRole",
            path: "",
            session: "i-0a41f6c2d8e93b175",
            invoked_by: None,
        },
        user_agents: &["aws-sdk-go/1.44.332 (go1.20.8; linux; amd64) ECS-Agent/1.77.0 (0f6c9b2d)"],
        source_ip: "54.210.33.17",
    },
    IdentitySpec {
        who: Who::SsmAgent,
        principal: Principal::Role {
            role: "AmazonSSMRoleForInstancesQuickSetup",
            path: "",
            session: "i-0f3e8d7c6b5a49382",
            invoked_by: None,
        },
        user_agents: &[
            "aws-sdk-go/1.44.260 (go1.20.4; linux; amd64) amazon-ssm-agent/3.2.1241.0",
            "aws-sdk-go/1.44.260 (go1.20.4; linux; arm64) amazon-ssm-agent/3.2.1241.0",
        ],
        source_ip: "3.91.144.205",
    },
    IdentitySpec {
        who: Who::LifecycleHook,
        principal: Principal::Role {
            role: "asg-lifecycle-hook-role",
            path: "",
            session: "lifecycle-drainer",
            invoked_by: None,
        },
        user_agents: &[UA_LAMBDA],
        source_ip: "44.201.12.96",
    },
    IdentitySpec {
        who: Who::GithubDeploy,
        principal: Principal::Role {
            role: "GitHubActionsDeployRole",
            path: "",
            session: "GitHubActions",
            invoked_by: None,
        },
        user_agents: &[UA_TERRAFORM, UA_TERRAFORM, UA_CLI_DEPLOY],
        source_ip: "20.62.134.91",
    },
    IdentitySpec {
        who: Who::Alice,
        principal: Principal::User {
            name: "alice",
            console: false,
        },
        user_agents: &[UA_CLI_ALICE, UA_BOTO_ALICE],
        source_ip: "203.0.113.24",
    },
    IdentitySpec {
        who: Who::Bob,
        principal: Principal::User {
            name: "bob",
            console: true,
        },
        user_agents: &[UA_CONSOLE, UA_CONSOLE_EC2],
        source_ip: "198.51.100.142",
    },
    IdentitySpec {
        who: Who::SsoAdmin,
        principal: Principal::Role {
            role: "AWSReservedSSO_AdministratorAccess_5f2e8a1c3b9d7e46",
            path: "aws-reserved/sso.amazonaws.com/",
            session: "carol@example.com",
            invoked_by: None,
        },
        user_agents: &[UA_BROWSER, UA_CONSOLE],
        source_ip: "198.51.100.77",
    },
    IdentitySpec {
        who: Who::Datadog,
        principal: Principal::Role {
            role: "DatadogIntegrationRole",
            path: "",
            session: "DatadogAWSIntegration",
            invoked_by: None,
        },
        user_agents: &["Datadog/1.0 aws-sdk-go/1.44.327 (go1.20.6; linux; amd64)"],
        source_ip: "34.201.8.9",
    },
    IdentitySpec {
        who: Who::ConfigService,
        principal: Principal::Role {
            role: "AWSServiceRoleForConfig",
            path: "aws-service-role/config.amazonaws.com/",
            session: "AWSConfig-Describe",
            invoked_by: Some("config.amazonaws.com"),
        },
        user_agents: &["config.amazonaws.com"],
        source_ip: "config.amazonaws.com",
    },
    IdentitySpec {
        who: Who::OrderLambda,
        principal: Principal::Role {
            role: "order-processor-role",
            path: "",
            session: "order-processor",
            invoked_by: None,
        },
        user_agents: &[UA_LAMBDA],
        source_ip: "3.236.55.102",
    },
    IdentitySpec {
        who: Who::AutoScalingService,
        principal: Principal::Service {
            service: "autoscaling.amazonaws.com",
        },
        user_agents: &["autoscaling.amazonaws.com"],
        source_ip: "autoscaling.amazonaws.com",
    },
    IdentitySpec {
        who: Who::EcsServiceRole,
        principal: Principal::Role {
            role: "AWSServiceRoleForECS",
            path: "aws-service-role/ecs.amazonaws.com/",
            session: "ecs-service-scheduler",
            invoked_by: Some("ecs.amazonaws.com"),
        },
        user_agents: &["ecs.amazonaws.com"],
        source_ip: "ecs.amazonaws.com",
    },
    IdentitySpec {
        who: Who::Intruder,
        principal: Principal::User {
            name: "svc-backup-legacy",
            console: false,
        },
        user_agents: &["aws-cli/1.16.312 Python/2.7.18 Linux/4.14.262-200.489.amzn2.x86_64 botocore/1.13.48"],
        source_ip: "192.0.2.181",
    },
    IdentitySpec {
        who: Who::Contractor,
        principal: Principal::User {
            name: "temp-contractor",
            console: false,
        },
        user_agents: &["aws-cli/2.13.0 Python/3.11.4 Windows/10 exe/AMD64 prompt/off command/cloudtrail.stop-logging"],
        source_ip: "192.0.2.200",
    },
];

/// The user agent of the stolen key in `error_spike` (alice's key, used from somewhere else).
pub(crate) const STOLEN_KEY_USER_AGENT: &str =
    "Boto3/1.26.165 Python/3.10.6 Linux/5.19.0-46-generic Botocore/1.29.165";
/// The source IP of the stolen key in `error_spike`.
pub(crate) const STOLEN_KEY_SOURCE_IP: &str = "192.0.2.55";

/// A value in a request/response template. Random parts are derived from the record's own seed,
/// so a template costs no allocation and no draw from the generator's stream.
#[derive(Debug)]
pub(crate) enum Val {
    Str(&'static str),
    Pick(&'static [&'static str]),
    /// `prefix` followed by this many lowercase hex digits (`i-0123…`).
    Hex(&'static str, u8),
    Int(u32, u32),
    Bool(bool),
    Null,
    Account,
    /// `arn:aws:iam::<account>:<kind>/<one of names>`.
    IamArn(&'static str, &'static [&'static str]),
    /// `arn:aws:<service>:<region>:<account>:<prefix><one of names>`.
    Arn(&'static str, &'static str, &'static [&'static str]),
    Obj(&'static [(&'static str, Val)]),
    /// `{"items":[{…}]}`, the EC2 way of writing a list.
    Items(&'static [(&'static str, Val)]),
    Uuid,
}

/// A template of a JSON object.
pub(crate) type Template = &'static [(&'static str, Val)];

/// How an error's `errorMessage` is written.
#[derive(Debug)]
pub(crate) enum Message {
    /// "User: <arn> is not authorized to perform: <svc>:<eventName> …", after `prefix`.
    Denied(&'static str),
    Text(&'static str),
}

/// One error an API returns at random.
#[derive(Debug)]
pub(crate) struct ErrorSpec {
    pub code: &'static str,
    /// Probability that one call fails with it.
    pub prob: f64,
    pub message: Message,
}

/// `ThrottlingException`, returned in short bursts by busy read APIs.
pub(crate) const THROTTLING: ErrorSpec = ErrorSpec {
    code: "ThrottlingException",
    prob: 0.0,
    message: Message::Text("Rate exceeded"),
};

/// One API of the catalogue.
#[derive(Debug)]
pub(crate) struct ApiSpec {
    pub source: &'static str,
    pub name: &'static str,
    pub read_only: bool,
    pub rhythm: Rhythm,
    /// Calls per minute at scale 1 in the reference account-region (weekday peak for `Office`).
    pub rate: f64,
    /// Shape of the gamma mixing the Poisson rate (over-dispersed counts); `None`: plain Poisson.
    pub dispersion: Option<f64>,
    /// Whether the API has occasional short bursts of `ThrottlingException`.
    pub throttled: bool,
    /// Global service: logged only in [`GLOBAL_REGION`].
    pub global: bool,
    pub errors: &'static [ErrorSpec],
    pub callers: &'static [(Who, u32)],
    pub request: Template,
    pub response: Option<Template>,
    pub additional: Option<Template>,
    pub event_version: &'static str,
}

impl ApiSpec {
    /// The IAM action prefix of the API (`ec2` for `ec2.amazonaws.com`).
    pub(crate) fn service(&self) -> &'static str {
        match self.source.split_once('.') {
            Some((svc, _)) => svc,
            None => self.source,
        }
    }
}

pub(crate) const fn api(
    source: &'static str,
    name: &'static str,
    read_only: bool,
    rhythm: Rhythm,
    rate: f64,
    callers: &'static [(Who, u32)],
    request: Template,
) -> ApiSpec {
    ApiSpec {
        source,
        name,
        read_only,
        rhythm,
        rate,
        dispersion: None,
        throttled: false,
        global: false,
        errors: &[],
        callers,
        request,
        response: None,
        additional: None,
        event_version: "1.09",
    }
}

const fn denied(code: &'static str, prob: f64) -> ErrorSpec {
    ErrorSpec {
        code,
        prob,
        message: Message::Denied(""),
    }
}

const fn err(code: &'static str, prob: f64, text: &'static str) -> ErrorSpec {
    ErrorSpec {
        code,
        prob,
        message: Message::Text(text),
    }
}

const EC2_DENIED: ErrorSpec = ErrorSpec {
    code: "Client.UnauthorizedOperation",
    prob: 0.008,
    message: Message::Denied("You are not authorized to perform this operation. "),
};

const BUCKETS: &[&str] = &[
    "acme-prod-assets",
    "acme-terraform-state",
    "acme-cloudtrail-logs",
    "acme-data-lake-raw",
    "acme-backups-eu",
];
const ROLES: &[&str] = &[
    "order-processor-role",
    "GitHubActionsDeployRole",
    "ecsTaskExecutionRole",
    "image-resizer-role",
];
const STACKS: &[&str] = &[
    "network-core",
    "payments-api",
    "orders-service",
    "observability",
    "image-pipeline",
];
const FUNCTIONS: &[&str] = &["order-processor", "image-resizer", "nightly-report"];
const SECRETS: &[&str] = &[
    "prod/payments/db",
    "prod/orders/api-key",
    "staging/shared/redis",
];
const USERS: &[&str] = &["alice", "bob", "deploy-bot", "svc-reporting"];
const CLUSTERS: &[&str] = &["prod-orders", "prod-payments"];
const POLICIES: &[&str] = &[
    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
];

const READERS: &[(Who, u32)] = &[
    (Who::Datadog, 5),
    (Who::ConfigService, 2),
    (Who::GithubDeploy, 2),
    (Who::Alice, 1),
    (Who::SsoAdmin, 1),
];
const HUMANS_AND_CI: &[(Who, u32)] = &[
    (Who::GithubDeploy, 6),
    (Who::Alice, 2),
    (Who::Bob, 1),
    (Who::SsoAdmin, 1),
];
const ADMINS: &[(Who, u32)] = &[(Who::SsoAdmin, 3), (Who::Alice, 1), (Who::GithubDeploy, 2)];
const APPS: &[(Who, u32)] = &[
    (Who::OrderLambda, 5),
    (Who::EcsAgent, 2),
    (Who::GithubDeploy, 1),
];

const S3_EXTRA: Template = &[
    ("SignatureVersion", Val::Str("SigV4")),
    ("CipherSuite", Val::Str("ECDHE-RSA-AES128-GCM-SHA256")),
    ("bytesTransferredIn", Val::Int(0, 0)),
    ("AuthenticationMethod", Val::Str("AuthHeader")),
    ("x-amz-id-2", Val::Hex("", 56)),
    ("bytesTransferredOut", Val::Int(200, 2400)),
];

/// The API catalogue of every account-region (IAM only where [`GLOBAL_REGION`]).
pub(crate) static CATALOGUE: &[ApiSpec] = &[
    // --- reads, mostly machines, flat ---
    ApiSpec {
        dispersion: Some(2.0),
        throttled: true,
        errors: &[EC2_DENIED],
        ..api(
            "ec2.amazonaws.com",
            "DescribeInstances",
            true,
            Rhythm::Flat,
            3.0,
            READERS,
            &[
                ("maxResults", Val::Int(100, 1000)),
                ("instancesSet", Val::Obj(&[])),
                ("filterSet", Val::Obj(&[])),
            ],
        )
    },
    ApiSpec {
        errors: &[EC2_DENIED],
        ..api(
            "ec2.amazonaws.com",
            "DescribeSecurityGroups",
            true,
            Rhythm::Flat,
            0.8,
            READERS,
            &[
                ("securityGroupSet", Val::Obj(&[])),
                (
                    "securityGroupIdSet",
                    Val::Items(&[("groupId", Val::Hex("sg-0", 16))]),
                ),
                ("filterSet", Val::Obj(&[])),
            ],
        )
    },
    ApiSpec {
        errors: &[EC2_DENIED],
        ..api(
            "ec2.amazonaws.com",
            "DescribeVolumes",
            true,
            Rhythm::Flat,
            0.6,
            READERS,
            &[("volumeSet", Val::Obj(&[])), ("filterSet", Val::Obj(&[]))],
        )
    },
    ApiSpec {
        errors: &[EC2_DENIED],
        ..api(
            "ec2.amazonaws.com",
            "DescribeSubnets",
            true,
            Rhythm::Office,
            0.4,
            HUMANS_AND_CI,
            &[
                ("subnetSet", Val::Items(&[("subnetId", Val::Hex("subnet-0", 16))])),
                ("filterSet", Val::Obj(&[])),
            ],
        )
    },
    ApiSpec {
        errors: &[EC2_DENIED],
        ..api(
            "ec2.amazonaws.com",
            "DescribeInstanceStatus",
            true,
            Rhythm::Flat,
            1.0,
            &[(Who::Datadog, 4), (Who::LifecycleHook, 1)],
            &[
                ("instancesSet", Val::Obj(&[])),
                ("filterSet", Val::Obj(&[])),
                ("includeAllInstances", Val::Bool(true)),
            ],
        )
    },
    ApiSpec {
        errors: &[denied("AccessDenied", 0.01)],
        additional: Some(S3_EXTRA),
        event_version: "1.10",
        ..api(
            "s3.amazonaws.com",
            "ListBuckets",
            true,
            Rhythm::Flat,
            0.5,
            READERS,
            &[("Host", Val::Str("s3.amazonaws.com"))],
        )
    },
    ApiSpec {
        errors: &[
            err(
                "NoSuchBucketPolicy",
                0.05,
                "The bucket policy does not exist",
            ),
            denied("AccessDenied", 0.005),
        ],
        additional: Some(S3_EXTRA),
        ..api(
            "s3.amazonaws.com",
            "GetBucketPolicy",
            true,
            Rhythm::Flat,
            0.4,
            READERS,
            &[
                ("bucketName", Val::Pick(BUCKETS)),
                ("Host", Val::Str("s3.amazonaws.com")),
                ("policy", Val::Str("")),
            ],
        )
    },
    ApiSpec {
        errors: &[denied("AccessDenied", 0.005)],
        additional: Some(S3_EXTRA),
        ..api(
            "s3.amazonaws.com",
            "GetBucketAcl",
            true,
            Rhythm::Flat,
            0.3,
            READERS,
            &[
                ("bucketName", Val::Pick(BUCKETS)),
                ("Host", Val::Str("s3.amazonaws.com")),
                ("acl", Val::Str("")),
            ],
        )
    },
    ApiSpec {
        additional: Some(S3_EXTRA),
        ..api(
            "s3.amazonaws.com",
            "GetBucketLocation",
            true,
            Rhythm::Flat,
            0.6,
            APPS,
            &[
                ("bucketName", Val::Pick(BUCKETS)),
                ("Host", Val::Str("s3.amazonaws.com")),
                ("location", Val::Str("")),
            ],
        )
    },
    ApiSpec {
        global: true,
        errors: &[
            err(
                "NoSuchEntityException",
                0.02,
                "The role with name legacy-etl-role cannot be found.",
            ),
            denied("AccessDenied", 0.005),
        ],
        ..api(
            "iam.amazonaws.com",
            "GetRole",
            true,
            Rhythm::Flat,
            0.5,
            READERS,
            &[("roleName", Val::Pick(ROLES))],
        )
    },
    ApiSpec {
        global: true,
        ..api(
            "iam.amazonaws.com",
            "ListRoles",
            true,
            Rhythm::Office,
            0.2,
            HUMANS_AND_CI,
            &[("maxItems", Val::Int(100, 1000))],
        )
    },
    ApiSpec {
        global: true,
        ..api(
            "iam.amazonaws.com",
            "ListAttachedRolePolicies",
            true,
            Rhythm::Flat,
            0.2,
            READERS,
            &[("roleName", Val::Pick(ROLES))],
        )
    },
    ApiSpec {
        dispersion: Some(2.0),
        throttled: true,
        event_version: "1.08",
        ..api(
            "sts.amazonaws.com",
            "GetCallerIdentity",
            true,
            Rhythm::Flat,
            1.5,
            &[
                (Who::GithubDeploy, 4),
                (Who::Alice, 1),
                (Who::OrderLambda, 2),
                (Who::Datadog, 2),
            ],
            &[],
        )
    },
    ApiSpec {
        errors: &[denied("AccessDenied", 0.004)],
        event_version: "1.08",
        response: Some(&[
            (
                "credentials",
                Val::Obj(&[
                    ("accessKeyId", Val::Hex("ASIA", 16)),
                    ("sessionToken", Val::Hex("IQoJb3JpZ2luX2Vj", 96)),
                    ("expiration", Val::Str("Mar 4, 2024, 1:00:00 PM")),
                ]),
            ),
            (
                "assumedRoleUser",
                Val::Obj(&[
                    ("assumedRoleId", Val::Hex("AROA", 17)),
                    ("arn", Val::IamArn("role", ROLES)),
                ]),
            ),
        ]),
        ..api(
            "sts.amazonaws.com",
            "AssumeRole",
            true,
            Rhythm::Flat,
            1.2,
            &[(Who::GithubDeploy, 2), (Who::Datadog, 3), (Who::EcsAgent, 2)],
            &[
                ("roleArn", Val::IamArn("role", ROLES)),
                ("roleSessionName", Val::Hex("session-", 12)),
                ("durationSeconds", Val::Int(900, 3600)),
            ],
        )
    },
    ApiSpec {
        dispersion: Some(2.5),
        throttled: true,
        errors: &[denied("AccessDeniedException", 0.005)],
        event_version: "1.08",
        ..api(
            "kms.amazonaws.com",
            "Decrypt",
            true,
            Rhythm::Flat,
            2.5,
            APPS,
            &[
                ("encryptionAlgorithm", Val::Str("SYMMETRIC_DEFAULT")),
                (
                    "encryptionContext",
                    Val::Obj(&[("aws:lambda:FunctionArn", Val::Arn("lambda", "function:", FUNCTIONS))]),
                ),
            ],
        )
    },
    ApiSpec {
        event_version: "1.08",
        errors: &[err("NotFoundException", 0.01, "Alias is not found.")],
        ..api(
            "kms.amazonaws.com",
            "DescribeKey",
            true,
            Rhythm::Flat,
            0.3,
            READERS,
            &[("keyId", Val::Uuid)],
        )
    },
    ApiSpec {
        errors: &[
            denied("AccessDenied", 0.01),
            err(
                "ResourceNotFoundException",
                0.005,
                "Secrets Manager can't find the specified secret.",
            ),
        ],
        ..api(
            "secretsmanager.amazonaws.com",
            "GetSecretValue",
            true,
            Rhythm::Flat,
            1.5,
            APPS,
            &[("secretId", Val::Arn("secretsmanager", "secret:", SECRETS))],
        )
    },
    ApiSpec {
        errors: &[err(
            "ParameterNotFound",
            0.005,
            "Parameter /prod/orders/feature-flags not found.",
        )],
        ..api(
            "ssm.amazonaws.com",
            "GetParameters",
            true,
            Rhythm::Flat,
            1.0,
            APPS,
            &[
                (
                    "names",
                    Val::Pick(&["/prod/orders/db-host", "/prod/payments/endpoint"]),
                ),
                ("withDecryption", Val::Bool(true)),
            ],
        )
    },
    api(
        "ssm.amazonaws.com",
        "DescribeInstanceInformation",
        true,
        Rhythm::Flat,
        0.3,
        &[(Who::Datadog, 1), (Who::ConfigService, 1)],
        &[("maxResults", Val::Int(10, 50))],
    ),
    ApiSpec {
        event_version: "1.08",
        ..api(
            "lambda.amazonaws.com",
            "ListFunctions20150331",
            true,
            Rhythm::Office,
            0.2,
            HUMANS_AND_CI,
            &[("maxItems", Val::Int(50, 50))],
        )
    },
    ApiSpec {
        errors: &[err(
            "ValidationError",
            0.01,
            "Stack with id legacy-network does not exist",
        )],
        ..api(
            "cloudformation.amazonaws.com",
            "DescribeStacks",
            true,
            Rhythm::Office,
            0.8,
            HUMANS_AND_CI,
            &[("stackName", Val::Pick(STACKS))],
        )
    },
    api(
        "logs.amazonaws.com",
        "DescribeLogGroups",
        true,
        Rhythm::Flat,
        0.3,
        READERS,
        &[("limit", Val::Int(50, 50))],
    ),
    api(
        "cloudtrail.amazonaws.com",
        "DescribeTrails",
        true,
        Rhythm::Flat,
        0.05,
        &[(Who::ConfigService, 1), (Who::SsoAdmin, 1)],
        &[("includeShadowTrails", Val::Bool(true))],
    ),
    api(
        "cloudtrail.amazonaws.com",
        "GetTrailStatus",
        true,
        Rhythm::Flat,
        0.05,
        &[(Who::Datadog, 1)],
        &[("name", Val::Arn("cloudtrail", "trail/", &["management-events"]))],
    ),
    api(
        "autoscaling.amazonaws.com",
        "DescribeAutoScalingGroups",
        true,
        Rhythm::Flat,
        0.6,
        &[(Who::Datadog, 2), (Who::LifecycleHook, 1)],
        &[("maxRecords", Val::Int(50, 100))],
    ),
    api(
        "elasticloadbalancing.amazonaws.com",
        "DescribeTargetHealth",
        true,
        Rhythm::Flat,
        0.8,
        &[(Who::Datadog, 1)],
        &[(
            "targetGroupArn",
            Val::Arn(
                "elasticloadbalancing",
                "targetgroup/",
                &["orders-tg/6d0ecf831eec9f09", "payments-tg/1a2b3c4d5e6f7a8b"],
            ),
        )],
    ),
    // --- automation writes, flat around the clock ---
    ApiSpec {
        event_version: "1.08",
        response: Some(&[("acknowledgment", Val::Str("ACK"))]),
        ..api(
            "ecs.amazonaws.com",
            "SubmitTaskStateChange",
            false,
            Rhythm::Flat,
            8.0,
            &[(Who::EcsAgent, 1)],
            &[
                ("cluster", Val::Pick(CLUSTERS)),
                ("task", Val::Hex("", 32)),
                ("status", Val::Pick(&["RUNNING", "STOPPED", "PENDING"])),
                ("reason", Val::Null),
            ],
        )
    },
    ApiSpec {
        event_version: "1.08",
        response: Some(&[("acknowledgment", Val::Str("ACK"))]),
        ..api(
            "ecs.amazonaws.com",
            "SubmitContainerStateChange",
            false,
            Rhythm::Flat,
            1.0,
            &[(Who::EcsAgent, 1)],
            &[
                ("cluster", Val::Pick(CLUSTERS)),
                ("task", Val::Hex("", 32)),
                ("containerName", Val::Pick(&["app", "envoy", "log-router"])),
                ("status", Val::Pick(&["RUNNING", "STOPPED"])),
            ],
        )
    },
    ApiSpec {
        errors: &[err(
            "InvalidInstanceId",
            0.002,
            "Instance Id i-0f3e8d7c6b5a49382 doesn't match a registered instance.",
        )],
        ..api(
            "ssm.amazonaws.com",
            "UpdateInstanceInformation",
            false,
            Rhythm::Flat,
            4.0,
            &[(Who::SsmAgent, 1)],
            &[
                ("instanceId", Val::Hex("i-0", 16)),
                ("agentVersion", Val::Str("3.2.1241.0")),
                ("agentStatus", Val::Str("Active")),
                ("platformType", Val::Str("Linux")),
                ("platformName", Val::Str("Amazon Linux")),
                ("platformVersion", Val::Str("2023")),
            ],
        )
    },
    ApiSpec {
        errors: &[err(
            "Client.InvalidInstanceID.NotFound",
            0.01,
            "The instance ID 'i-0c4b2a1f9e8d7c6b5' does not exist",
        )],
        response: Some(&[("requestId", Val::Uuid), ("_return", Val::Bool(true))]),
        ..api(
            "ec2.amazonaws.com",
            "CreateTags",
            false,
            Rhythm::Flat,
            1.0,
            &[(Who::AutoScalingService, 3), (Who::GithubDeploy, 1)],
            &[
                ("resourcesSet", Val::Items(&[("resourceId", Val::Hex("i-0", 16))])),
                (
                    "tagSet",
                    Val::Items(&[
                        ("key", Val::Pick(&["aws:autoscaling:groupName", "Name"])),
                        ("value", Val::Pick(&["orders-asg", "payments-asg"])),
                    ]),
                ),
            ],
        )
    },
    ApiSpec {
        dispersion: Some(4.0),
        errors: &[err(
            "ResourceAlreadyExistsException",
            0.01,
            "The specified log stream already exists",
        )],
        ..api(
            "logs.amazonaws.com",
            "CreateLogStream",
            false,
            Rhythm::Flat,
            1.5,
            &[(Who::OrderLambda, 3), (Who::EcsAgent, 1)],
            &[
                ("logGroupName", Val::Pick(&["/aws/lambda/order-processor", "/ecs/prod-orders"])),
                ("logStreamName", Val::Hex("2024/03/04/[$LATEST]", 32)),
            ],
        )
    },
    ApiSpec {
        errors: &[err(
            "ValidationError",
            0.02,
            "No active Lifecycle Action found with token",
        )],
        ..api(
            "autoscaling.amazonaws.com",
            "CompleteLifecycleAction",
            false,
            Rhythm::Flat,
            0.2,
            &[(Who::LifecycleHook, 1)],
            &[
                ("lifecycleHookName", Val::Str("drain-on-terminate")),
                ("autoScalingGroupName", Val::Pick(&["orders-asg", "payments-asg"])),
                ("lifecycleActionResult", Val::Str("CONTINUE")),
                ("instanceId", Val::Hex("i-0", 16)),
            ],
        )
    },
    ApiSpec {
        event_version: "1.08",
        response: Some(&[
            ("functionName", Val::Pick(FUNCTIONS)),
            ("runtime", Val::Str("python3.12")),
            ("memorySize", Val::Int(256, 1024)),
        ]),
        ..api(
            "lambda.amazonaws.com",
            "UpdateFunctionConfiguration20150331v2",
            false,
            Rhythm::Flat,
            0.05,
            &[(Who::GithubDeploy, 1)],
            &[
                ("functionName", Val::Pick(FUNCTIONS)),
                ("memorySize", Val::Int(256, 1024)),
            ],
        )
    },
    // --- human and CI writes, business-hours rhythm (rate = weekday peak) ---
    ApiSpec {
        errors: &[
            EC2_DENIED,
            err(
                "Client.VcpuLimitExceeded",
                0.01,
                "You have requested more vCPU capacity than your current vCPU limit of 256 allows for the instance bucket that the specified instance type belongs to.",
            ),
        ],
        response: Some(&[
            ("requestId", Val::Uuid),
            ("reservationId", Val::Hex("r-0", 16)),
            ("ownerId", Val::Account),
            (
                "instancesSet",
                Val::Items(&[
                    ("instanceId", Val::Hex("i-0", 16)),
                    ("imageId", Val::Pick(&["ami-0c101f26f147fa7fd", "ami-07d9b9ddc6cd8dd30"])),
                    ("instanceState", Val::Obj(&[("code", Val::Int(0, 0)), ("name", Val::Str("pending"))])),
                    ("instanceType", Val::Pick(&["t3.medium", "m6i.large", "c6g.xlarge"])),
                    ("subnetId", Val::Hex("subnet-0", 16)),
                    ("vpcId", Val::Hex("vpc-0", 16)),
                ]),
            ),
        ]),
        ..api(
            "ec2.amazonaws.com",
            "RunInstances",
            false,
            Rhythm::Office,
            1.5,
            HUMANS_AND_CI,
            &[
                (
                    "instancesSet",
                    Val::Items(&[
                        ("imageId", Val::Pick(&["ami-0c101f26f147fa7fd", "ami-07d9b9ddc6cd8dd30"])),
                        ("minCount", Val::Int(1, 1)),
                        ("maxCount", Val::Int(1, 3)),
                    ]),
                ),
                ("instanceType", Val::Pick(&["t3.medium", "m6i.large", "c6g.xlarge"])),
                ("monitoring", Val::Obj(&[("enabled", Val::Bool(false))])),
                ("clientToken", Val::Uuid),
            ],
        )
    },
    ApiSpec {
        errors: &[
            EC2_DENIED,
            err(
                "Client.InvalidInstanceID.NotFound",
                0.02,
                "The instance ID 'i-0b7e3d5c1a9f8e2d4' does not exist",
            ),
        ],
        response: Some(&[
            ("requestId", Val::Uuid),
            (
                "instancesSet",
                Val::Items(&[
                    ("instanceId", Val::Hex("i-0", 16)),
                    ("currentState", Val::Obj(&[("code", Val::Int(32, 32)), ("name", Val::Str("shutting-down"))])),
                    ("previousState", Val::Obj(&[("code", Val::Int(16, 16)), ("name", Val::Str("running"))])),
                ]),
            ),
        ]),
        ..api(
            "ec2.amazonaws.com",
            "TerminateInstances",
            false,
            Rhythm::Office,
            1.3,
            HUMANS_AND_CI,
            &[("instancesSet", Val::Items(&[("instanceId", Val::Hex("i-0", 16))]))],
        )
    },
    ApiSpec {
        errors: &[err(
            "ValidationError",
            0.05,
            "No updates are to be performed.",
        )],
        response: Some(&[("stackId", Val::Arn("cloudformation", "stack/", STACKS))]),
        ..api(
            "cloudformation.amazonaws.com",
            "UpdateStack",
            false,
            Rhythm::Office,
            0.5,
            HUMANS_AND_CI,
            &[
                ("stackName", Val::Pick(STACKS)),
                ("templateURL", Val::Str("https://s3.amazonaws.com/acme-cfn-templates/stack.yaml")),
                ("capabilities", Val::Pick(&["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])),
            ],
        )
    },
    ApiSpec {
        errors: &[err(
            "AlreadyExistsException",
            0.02,
            "Stack [orders-service] already exists",
        )],
        response: Some(&[("stackId", Val::Arn("cloudformation", "stack/", STACKS))]),
        ..api(
            "cloudformation.amazonaws.com",
            "CreateStack",
            false,
            Rhythm::Office,
            0.15,
            HUMANS_AND_CI,
            &[
                ("stackName", Val::Pick(STACKS)),
                ("templateURL", Val::Str("https://s3.amazonaws.com/acme-cfn-templates/stack.yaml")),
                ("onFailure", Val::Str("ROLLBACK")),
            ],
        )
    },
    ApiSpec {
        errors: &[
            denied("AccessDenied", 0.01),
            err("MalformedPolicy", 0.02, "Policy has invalid resource"),
        ],
        additional: Some(S3_EXTRA),
        ..api(
            "s3.amazonaws.com",
            "PutBucketPolicy",
            false,
            Rhythm::Office,
            0.08,
            ADMINS,
            &[
                ("bucketName", Val::Pick(BUCKETS)),
                ("Host", Val::Str("s3.amazonaws.com")),
                ("policy", Val::Str("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"DenyInsecureTransport\",\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"s3:*\",\"Resource\":\"*\",\"Condition\":{\"Bool\":{\"aws:SecureTransport\":\"false\"}}}]}")),
            ],
        )
    },
    ApiSpec {
        global: true,
        errors: &[err(
            "NoSuchEntityException",
            0.02,
            "The role with name image-resizer-role cannot be found.",
        )],
        ..api(
            "iam.amazonaws.com",
            "AttachRolePolicy",
            false,
            Rhythm::Office,
            0.1,
            ADMINS,
            &[("roleName", Val::Pick(ROLES)), ("policyArn", Val::Pick(POLICIES))],
        )
    },
    ApiSpec {
        global: true,
        errors: &[err(
            "EntityAlreadyExistsException",
            0.03,
            "Role with name image-resizer-role already exists.",
        )],
        response: Some(&[(
            "role",
            Val::Obj(&[
                ("path", Val::Str("/")),
                ("roleName", Val::Pick(ROLES)),
                ("roleId", Val::Hex("AROA", 17)),
                ("arn", Val::IamArn("role", ROLES)),
            ]),
        )]),
        ..api(
            "iam.amazonaws.com",
            "CreateRole",
            false,
            Rhythm::Office,
            0.05,
            ADMINS,
            &[
                ("roleName", Val::Pick(ROLES)),
                ("assumeRolePolicyDocument", Val::Str("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"lambda.amazonaws.com\"},\"Action\":\"sts:AssumeRole\"}]}")),
            ],
        )
    },
    ApiSpec {
        errors: &[
            EC2_DENIED,
            err(
                "Client.InvalidPermission.Duplicate",
                0.05,
                "the specified rule \"peer: 10.0.0.0/16, TCP, from port: 443, to port: 443, ALLOW\" already exists",
            ),
        ],
        response: Some(&[("requestId", Val::Uuid), ("_return", Val::Bool(true))]),
        ..api(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            false,
            Rhythm::Office,
            0.3,
            HUMANS_AND_CI,
            &[
                ("groupId", Val::Hex("sg-0", 16)),
                (
                    "ipPermissions",
                    Val::Items(&[
                        ("ipProtocol", Val::Str("tcp")),
                        ("fromPort", Val::Int(443, 443)),
                        ("toPort", Val::Int(443, 443)),
                    ]),
                ),
            ],
        )
    },
    ApiSpec {
        errors: &[EC2_DENIED],
        response: Some(&[("requestId", Val::Uuid), ("_return", Val::Bool(true))]),
        ..api(
            "ec2.amazonaws.com",
            "ModifyInstanceAttribute",
            false,
            Rhythm::Office,
            0.1,
            HUMANS_AND_CI,
            &[
                ("instanceId", Val::Hex("i-0", 16)),
                ("disableApiTermination", Val::Obj(&[("value", Val::Bool(true))])),
            ],
        )
    },
    ApiSpec {
        event_version: "1.08",
        errors: &[err(
            "ResourceConflictException",
            0.02,
            "An update is in progress for resource: arn:aws:lambda:us-east-1:418295730164:function:order-processor",
        )],
        response: Some(&[
            ("functionName", Val::Pick(FUNCTIONS)),
            ("codeSha256", Val::Hex("", 44)),
            ("version", Val::Str("$LATEST")),
        ]),
        ..api(
            "lambda.amazonaws.com",
            "UpdateFunctionCode20150331v2",
            false,
            Rhythm::Office,
            0.4,
            &[(Who::GithubDeploy, 1)],
            &[
                ("functionName", Val::Pick(FUNCTIONS)),
                ("s3Bucket", Val::Str("acme-lambda-artifacts")),
                ("publish", Val::Bool(false)),
            ],
        )
    },
    ApiSpec {
        errors: &[err(
            "ParameterAlreadyExists",
            0.02,
            "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
        )],
        response: Some(&[("version", Val::Int(1, 40)), ("tier", Val::Str("Standard"))]),
        ..api(
            "ssm.amazonaws.com",
            "PutParameter",
            false,
            Rhythm::Office,
            0.3,
            HUMANS_AND_CI,
            &[
                ("name", Val::Pick(&["/prod/orders/feature-flags", "/prod/payments/endpoint"])),
                ("type", Val::Str("String")),
                ("overwrite", Val::Bool(true)),
            ],
        )
    },
    ApiSpec {
        event_version: "1.08",
        response: Some(&[(
            "service",
            Val::Obj(&[
                ("serviceName", Val::Pick(&["orders-api", "payments-api"])),
                ("desiredCount", Val::Int(2, 8)),
                ("status", Val::Str("ACTIVE")),
            ]),
        )]),
        ..api(
            "ecs.amazonaws.com",
            "UpdateService",
            false,
            Rhythm::Office,
            0.3,
            &[(Who::GithubDeploy, 4), (Who::EcsServiceRole, 1)],
            &[
                ("cluster", Val::Pick(CLUSTERS)),
                ("service", Val::Pick(&["orders-api", "payments-api"])),
                ("forceNewDeployment", Val::Bool(true)),
            ],
        )
    },
    ApiSpec {
        event_version: "1.08",
        response: Some(&[(
            "taskDefinition",
            Val::Obj(&[
                ("family", Val::Pick(&["orders-api", "payments-api"])),
                ("revision", Val::Int(10, 400)),
                ("status", Val::Str("ACTIVE")),
            ]),
        )]),
        ..api(
            "ecs.amazonaws.com",
            "RegisterTaskDefinition",
            false,
            Rhythm::Office,
            0.2,
            &[(Who::GithubDeploy, 1)],
            &[
                ("family", Val::Pick(&["orders-api", "payments-api"])),
                ("networkMode", Val::Str("awsvpc")),
                ("cpu", Val::Str("512")),
                ("memory", Val::Str("1024")),
            ],
        )
    },
    // --- rare writes ---
    ApiSpec {
        global: true,
        errors: &[err(
            "LimitExceeded",
            0.05,
            "Cannot exceed quota for AccessKeysPerUser: 2",
        )],
        response: Some(&[(
            "accessKey",
            Val::Obj(&[
                ("userName", Val::Pick(USERS)),
                ("accessKeyId", Val::Hex("AKIA", 16)),
                ("status", Val::Str("Active")),
            ]),
        )]),
        ..api(
            "iam.amazonaws.com",
            "CreateAccessKey",
            false,
            Rhythm::Flat,
            0.001,
            ADMINS,
            &[("userName", Val::Pick(USERS))],
        )
    },
    ApiSpec {
        global: true,
        response: Some(&[(
            "user",
            Val::Obj(&[
                ("path", Val::Str("/")),
                ("userName", Val::Pick(&["svc-etl", "svc-metrics", "dave"])),
                ("userId", Val::Hex("AIDA", 17)),
            ]),
        )]),
        ..api(
            "iam.amazonaws.com",
            "CreateUser",
            false,
            Rhythm::Flat,
            0.0008,
            ADMINS,
            &[("userName", Val::Pick(&["svc-etl", "svc-metrics", "dave"]))],
        )
    },
    ApiSpec {
        global: true,
        ..api(
            "iam.amazonaws.com",
            "DeleteAccessKey",
            false,
            Rhythm::Flat,
            0.001,
            ADMINS,
            &[
                ("userName", Val::Pick(USERS)),
                ("accessKeyId", Val::Hex("AKIA", 16)),
            ],
        )
    },
    ApiSpec {
        response: Some(&[
            ("name", Val::Str("management-events")),
            ("s3BucketName", Val::Str("acme-cloudtrail-logs")),
            ("isMultiRegionTrail", Val::Bool(true)),
        ]),
        ..api(
            "cloudtrail.amazonaws.com",
            "UpdateTrail",
            false,
            Rhythm::Flat,
            0.0005,
            &[(Who::SsoAdmin, 1)],
            &[
                ("name", Val::Str("management-events")),
                ("isMultiRegionTrail", Val::Bool(true)),
            ],
        )
    },
    ApiSpec {
        event_version: "1.08",
        response: Some(&[
            ("keyId", Val::Arn("kms", "key/", &["0f5e1c2a-7b44-4d2e-9a35-6c1b8e7d4f20"])),
            ("keyState", Val::Str("PendingDeletion")),
            ("pendingWindowInDays", Val::Int(7, 30)),
        ]),
        ..api(
            "kms.amazonaws.com",
            "ScheduleKeyDeletion",
            false,
            Rhythm::Flat,
            0.001,
            ADMINS,
            &[("keyId", Val::Uuid), ("pendingWindowInDays", Val::Int(7, 30))],
        )
    },
];

/// APIs that never appear in the background and are called only by `new_api` incidents.
pub(crate) static NEW_APIS: &[ApiSpec] = &[
    ApiSpec {
        response: Some(&[]),
        ..api(
            "cloudtrail.amazonaws.com",
            "StopLogging",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::Contractor, 1)],
            &[("name", Val::Arn("cloudtrail", "trail/", &["management-events", "org-trail"]))],
        )
    },
    ApiSpec {
        global: true,
        ..api(
            "iam.amazonaws.com",
            "PutUserPolicy",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::Contractor, 1)],
            &[
                ("userName", Val::Pick(USERS)),
                ("policyName", Val::Pick(&["backup-access", "s3-full", "admin-tmp"])),
                ("policyDocument", Val::Str("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}]}")),
            ],
        )
    },
    ApiSpec {
        response: Some(&[("requestId", Val::Uuid), ("_return", Val::Bool(true))]),
        ..api(
            "ec2.amazonaws.com",
            "ModifySnapshotAttribute",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::Contractor, 1)],
            &[
                ("snapshotId", Val::Hex("snap-0", 16)),
                ("attributeType", Val::Str("CREATE_VOLUME_PERMISSION")),
                (
                    "createVolumePermission",
                    Val::Obj(&[("add", Val::Items(&[("userId", Val::Str("999988887777"))]))]),
                ),
            ],
        )
    },
];

/// Whether an API is logged in this region.
pub(crate) fn logged_in(spec: &ApiSpec, region: &str) -> bool {
    !spec.global || region == GLOBAL_REGION
}

/// Finds a catalogue API by name.
pub(crate) fn catalogue_api(source: &str, name: &str) -> Option<usize> {
    CATALOGUE
        .iter()
        .position(|a| a.source == source && a.name == name)
}

/// Day of the week of a minute, 0 = Monday (1970-01-01 was a Thursday).
pub(crate) fn weekday(minute: Minute) -> i64 {
    (minute.div_euclid(crate::series::MINUTES_PER_DAY) + 3).rem_euclid(7)
}

/// A 64-bit mixer (splitmix64 finaliser): stable, fast, well spread.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable hash of a string (FNV-1a then mixed), for ids derived from names.
pub(crate) fn hash_str(s: &str, salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// Uppercase id characters AWS uses in principal and key ids.
const ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// `prefix` + `len` id characters derived from `seed` (e.g. `AROA` + 17 for role ids).
fn aws_id(prefix: &str, len: usize, seed: u64) -> String {
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    let mut state = seed;
    for i in 0..len {
        if i % 12 == 0 {
            state = mix64(state);
        }
        let idx = ((state >> ((i % 12) * 5)) & 31) as usize;
        out.push(char::from(ID_ALPHABET[idx]));
    }
    out
}

/// The kind of `userIdentity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityKind {
    IamUser,
    AssumedRole,
    AwsService,
}

/// An identity of one account, with every string of its `userIdentity` built once.
#[derive(Debug)]
pub(crate) struct Identity {
    pub kind: IdentityKind,
    pub account: String,
    pub arn: String,
    pub principal_id: String,
    pub access_key_id: String,
    /// `userName` of an IAM user.
    pub user_name: &'static str,
    /// Session issuer (roles): role ARN, role id, role name.
    pub role_arn: String,
    pub role_id: String,
    pub role_name: &'static str,
    pub invoked_by: Option<&'static str>,
    /// Whether the identity carries a `sessionContext` (roles and console users).
    pub has_session: bool,
    pub mfa: bool,
    pub user_agents: &'static [&'static str],
    pub source_ip: &'static str,
}

/// An assumed-role session of `role` in `account`, its ids drawn from `salt`; not invoked by a
/// service, no MFA, no user agents or source address yet (the caller sets those).
pub(crate) fn assumed_role(
    account: &str,
    role: &'static str,
    path: &str,
    session: &str,
    salt: u64,
) -> Identity {
    let role_id = aws_id("AROA", 17, hash_str(role, salt));
    Identity {
        kind: IdentityKind::AssumedRole,
        account: account.to_string(),
        arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
        principal_id: format!("{role_id}:{session}"),
        access_key_id: aws_id("ASIA", 16, hash_str(role, salt ^ 1)),
        user_name: "",
        role_arn: format!("arn:aws:iam::{account}:role/{path}{role}"),
        role_id,
        role_name: role,
        invoked_by: None,
        has_session: true,
        mfa: false,
        user_agents: &[],
        source_ip: "",
    }
}

/// Builds the identities of an account, in [`Who`] order.
pub(crate) fn identities(account: &str) -> Vec<Identity> {
    IDENTITIES
        .iter()
        .map(|spec| {
            let salt = hash_str(account, spec.who as u64);
            match spec.principal {
                Principal::User { name, console } => Identity {
                    kind: IdentityKind::IamUser,
                    account: account.to_string(),
                    arn: format!("arn:aws:iam::{account}:user/{name}"),
                    principal_id: aws_id("AIDA", 17, hash_str(name, salt)),
                    access_key_id: aws_id(
                        if console { "ASIA" } else { "AKIA" },
                        16,
                        hash_str(name, salt ^ 1),
                    ),
                    user_name: name,
                    role_arn: String::new(),
                    role_id: String::new(),
                    role_name: "",
                    invoked_by: None,
                    has_session: console,
                    mfa: console,
                    user_agents: spec.user_agents,
                    source_ip: spec.source_ip,
                },
                Principal::Role {
                    role,
                    path,
                    session,
                    invoked_by,
                } => Identity {
                    invoked_by,
                    mfa: matches!(spec.who, Who::SsoAdmin),
                    user_agents: spec.user_agents,
                    source_ip: spec.source_ip,
                    ..assumed_role(account, role, path, session, salt)
                },
                Principal::Service { service } => Identity {
                    kind: IdentityKind::AwsService,
                    account: account.to_string(),
                    arn: String::new(),
                    principal_id: String::new(),
                    access_key_id: String::new(),
                    user_name: "",
                    role_arn: String::new(),
                    role_id: String::new(),
                    role_name: "",
                    invoked_by: Some(service),
                    has_session: false,
                    mfa: false,
                    user_agents: spec.user_agents,
                    source_ip: spec.source_ip,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_in_who_order_and_new_apis_are_not_in_the_catalogue() {
        for (i, spec) in IDENTITIES.iter().enumerate() {
            assert_eq!(spec.who as usize, i);
        }
        for spec in NEW_APIS {
            assert!(catalogue_api(spec.source, spec.name).is_none());
        }
        let ids = identities("418295730164");
        assert_eq!(
            ids[Who::EcsAgent as usize].arn,
            "arn:aws:sts::418295730164:assumed-role/ecsInstanceRole/i-0a41f6c2d8e93b175"
        );
        assert_eq!(ids[Who::Alice as usize].access_key_id.len(), 20);
        assert!(ids[Who::Alice as usize].access_key_id.starts_with("AKIA"));
        // background callers never include the incident identities
        for api in CATALOGUE {
            assert!(!api.callers.is_empty());
            for (who, _) in api.callers {
                assert!(!matches!(who, Who::Intruder | Who::Contractor));
            }
        }
        // 2024-03-04 was a Monday
        assert_eq!(weekday(1_709_510_400 / 60), 0);
    }
}
