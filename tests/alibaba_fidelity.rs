//! Vendor fidelity (issue 13, Alibaba): the simulator's tables are its own, written from the
//! seeds, and agree with the client's except where a comment says why; the simulator refuses
//! what the vendor documents it refuses, and the client lives with it.

#![cfg(feature = "sim")]

mod support;

use certkeeper::cloud::alibaba::client::{
    default_rate_limits, is_known_code, AlibabaClient, Product, DEFAULT_RATE_LIMITS,
};
use certkeeper::cloud::alibaba::sim_tables;
use certkeeper::config::credentials::{Provider, ResolvedCredentials};
use certkeeper::error::ErrorClass;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

const ID: &str = "LTAIfidelity";
const SECRET: &str = "fidelity-secret";

/// The seed fixtures, by the number the simulator's table cites them with.
fn seed_fixture(number: &str) -> &'static str {
    match number {
        "000" => include_str!("fixtures/seeds/000_rds_modify_db_instance_ssl.txt"),
        "001" => include_str!("fixtures/seeds/001_vod_set_vod_domain_ssl_certificate.txt"),
        "002" => include_str!("fixtures/seeds/002_cdn_set_domain_server_certificate.txt"),
        other => panic!("no seed fixture {other}"),
    }
}

/// Every simulator row citing a seed line really is that line: status, code and message.
#[test]
fn simulator_rows_are_written_from_the_seed_lines_they_cite() {
    let mut cited = 0;
    for row in sim_tables::DOCUMENTED_ERRORS {
        for source in row.source.split(", ") {
            let Some(rest) = source.strip_prefix("seed ") else {
                continue;
            };
            let (number, line) = rest.split_once(" line ").unwrap();
            let line: usize = line.parse().unwrap();
            let text = seed_fixture(number).lines().nth(line - 1).unwrap();
            assert!(
                text.starts_with(&row.status.to_string()),
                "{}: {source} is {text}",
                row.code
            );
            let squeezed: String = text.split(['|', ' ']).collect();
            let code: String = row.code.split(' ').collect();
            let message: String = row.message.split(' ').collect();
            assert!(
                squeezed.contains(&format!("{code}{message}")),
                "{}: {source} is {text}",
                row.code
            );
            cited += 1;
        }
    }
    assert!(cited >= 40, "{cited}");
}

/// The simulator answers only with codes it has a row for (so `doc` never falls back).
#[test]
fn every_code_the_simulator_refuses_with_has_a_row() {
    let source = include_str!("../src/cloud/alibaba/sim.rs");
    let mut used = 0;
    for call in ["doc(\"", "doc_with(\""] {
        for piece in source.split(call).skip(1) {
            let code = piece.split('"').next().unwrap();
            assert!(
                sim_tables::documented(code).is_some(),
                "sim.rs refuses with {code} but the table has no row"
            );
            used += 1;
        }
    }
    assert!(used >= 40, "{used}");
}

/// The client's tables against the simulator's. Both come from the seeds; every difference
/// below is a deliberate decision, not a copy that drifted.
#[test]
fn client_and_simulator_tables_agree_or_say_why() {
    // Rates: the client shapes to the documented limits the simulator enforces.
    let client: BTreeMap<&str, f64> = DEFAULT_RATE_LIMITS.iter().copied().collect();
    let simulator: BTreeMap<&str, f64> = sim_tables::RATE_LIMITS.iter().copied().collect();
    // Exceptions, each deliberate:
    // - DescribeVodDomainCertificateInfo: undocumented; the client assumes the 100/s of every
    //   sibling read (BENCHMARKS.md), the simulator enforces nothing it cannot cite.
    let client_only = ["DescribeVodDomainCertificateInfo"];
    // - DescribeCdnDomainDetail, GetUserCertificateDetail: documented, never called by us.
    let simulator_only = ["DescribeCdnDomainDetail", "GetUserCertificateDetail"];
    for (action, rate) in &client {
        if client_only.contains(action) {
            assert!(
                !simulator.contains_key(action),
                "{action} is documented now"
            );
            continue;
        }
        assert_eq!(simulator.get(action), Some(rate), "rate of {action}");
    }
    for action in simulator.keys() {
        assert!(
            client.contains_key(action) || simulator_only.contains(action),
            "the client has no rate for documented {action}"
        );
    }
    // The limiter really uses the documented rates.
    let limits = default_rate_limits();
    for (action, rate) in sim_tables::RATE_LIMITS {
        if !simulator_only.contains(action) {
            assert_eq!(limits.rate_for(action), *rate, "{action}");
        }
    }

    // Error codes: every code the simulator answers with is classified by the client's
    // table, not left to the HTTP-status fallback; a documented 5xx is never `Invalid`.
    for row in sim_tables::DOCUMENTED_ERRORS {
        assert!(is_known_code(row.code), "{} is not classified", row.code);
        let class = certkeeper::cloud::alibaba::client::classify(row.code, row.status);
        if row.status >= 500 {
            assert_ne!(class, ErrorClass::Invalid, "{}", row.code);
        }
    }

    // Value sets.
    assert_eq!(
        certkeeper::cloud::alibaba::cdn::CERT_REGIONS,
        sim_tables::CERT_REGIONS
    );
    assert_eq!(
        certkeeper::cloud::alibaba::cdn::CERT_REGIONS[0],
        sim_tables::DEFAULT_CERT_REGION
    );
    assert_eq!(
        Product::Vod.default_endpoint(),
        format!("https://vod.{}.aliyuncs.com", sim_tables::VOD_REGION)
    );
}

/// A simulator on loopback that also answers for vendor host names (resolved to it), so a
/// request's `host` names the region it was sent to, as at the vendor's gateway.
pub struct RegionalSim {
    sim: support::Sim,
    addr: SocketAddr,
}

impl RegionalSim {
    pub fn start(extra_seed: &str) -> Self {
        let sim = support::start_sim(&format!(
            "[[alibaba.accounts]]\naccess_key_id = \"{ID}\"\naccess_key_secret = \"{SECRET}\"\n\n[alibaba]\n{extra_seed}"
        ));
        let addr = sim.url.trim_start_matches("http://").parse().unwrap();
        Self { sim, addr }
    }

    /// `http://HOST:PORT` for a vendor host name served by the simulator.
    pub fn url(&self, host: &str) -> String {
        format!("http://{host}:{}", self.addr.port())
    }

    /// A client whose products go to `endpoints` (product key -> vendor host name).
    pub fn client(&self, endpoints: &[(&str, &str)]) -> AlibabaClient {
        let mut creds = ResolvedCredentials::new("ali", Provider::Alibaba, ID, SECRET)
            .with_endpoint(&self.sim.url);
        let mut http = reqwest::Client::builder().no_proxy();
        for (product, host) in endpoints {
            creds = creds.with_product_endpoint(product, &self.url(host));
            http = http.resolve(host, self.addr);
        }
        AlibabaClient::new(creds, http.build().unwrap(), default_rate_limits())
    }

    pub fn state(&self) -> serde_json::Value {
        self.sim.simulator.state_json()["alibaba"].clone()
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// VOD domain APIs are served from cn-shanghai only (seed 001): another region's endpoint
/// refuses them, naming the region; the documented one serves them.
#[test]
fn vod_is_served_from_cn_shanghai_only() {
    let sim = RegionalSim::start("vod_domains = [\"v.example.com\"]");
    let describe = |client: AlibabaClient| {
        block_on(async move {
            client
                .call(
                    Product::Vod,
                    "DescribeVodDomainCertificateInfo",
                    &[("DomainName", "v.example.com".to_owned())],
                )
                .await
        })
    };
    let error = describe(sim.client(&[("vod", "vod.cn-hangzhou.aliyuncs.com")])).unwrap_err();
    assert_eq!(error.code, "UnsupportedOperation", "{error}");
    assert_eq!(error.class, ErrorClass::Unsupported);
    assert!(error.message.contains("cn-shanghai"), "{error}");
    let reply = describe(sim.client(&[("vod", "vod.cn-shanghai.aliyuncs.com")])).unwrap();
    assert!(reply["CertInfos"].is_object(), "{reply}");
}

/// ACS3 requires `x-acs-content-sha256` (reference §1.2): a request signed without it is
/// refused before its signature is even checked.
#[test]
fn acs3_without_the_content_hash_is_refused() {
    use certkeeper::cloud::alibaba::client::now_acs_date;
    use certkeeper::cloud::alibaba::signer::{sign_acs3, Acs3Call, CanonicalRequest};
    let sim = RegionalSim::start("cdn_domains = [\"www.example.com\"]");
    let params = vec![("DomainName".to_owned(), "www.example.com".to_owned())];
    let date = now_acs_date();
    let host = sim.sim.url.trim_start_matches("http://").to_owned();
    let (action, version, nonce) = (
        "DescribeDomainCertificateInfo",
        Product::Cdn.version(),
        "no-content-hash",
    );
    let (host, params, date) = (host.as_str(), params.as_slice(), date.as_str());
    let call = Acs3Call {
        host,
        action,
        version,
        params,
        date,
        nonce,
    };
    let mut signed = call.form_signed_headers("");
    signed.retain(|(name, _)| name != "x-acs-content-sha256" && name != "content-type");
    let empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let canonical = CanonicalRequest::new("POST", params.to_vec(), &signed, empty_hash);
    let authorization = sign_acs3(ID, SECRET, &canonical);
    let (status, body) = block_on(async {
        let mut request = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!("{}/?DomainName=www.example.com", sim.sim.url))
            .header("authorization", authorization.to_string());
        for (name, value) in signed.iter().filter(|(name, _)| name != "host") {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    });
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["Code"], "IncompleteSignature", "{body}");
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("x-acs-content-sha256"),
        "{body}"
    );
}

fn legacy_cdn(domain: &str) -> certkeeper::cloud::alibaba::cdn::CdnSettings {
    toml::from_str(&format!("domain = \"{domain}\"\napi = \"legacy\"")).unwrap()
}

/// Legacy CDN: ForceSet=1 (seed 002) lets the same certificate go to a second domain and be
/// set again on the first (a replay, a rollback) under its one name; CDN keeps one copy.
/// Without ForceSet the simulator refuses the known name, as the seed documents.
#[test]
fn legacy_cdn_forces_its_own_name_on_a_second_domain_and_a_replay() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::cloud::alibaba::cdn::{cert_name, CdnTarget};
    use certkeeper::cloud::Target;
    use certkeeper::engine::converge::{converge, Convergence};
    let sim = RegionalSim::start("cdn_domains = [\"a.example.com\", \"b.example.com\"]");
    let client = Arc::new(sim.client(&[]));
    let first = testing::fresh(&["a.example.com", "b.example.com"]);
    let second = testing::fresh(&["a.example.com", "b.example.com"]);
    let a = CdnTarget::new("a", legacy_cdn("a.example.com"), client.clone());
    let b = CdnTarget::new("b", legacy_cdn("b.example.com"), client.clone());
    block_on(async {
        assert_eq!(converge(&a, &first).await.unwrap(), Convergence::Deployed);
        assert_eq!(converge(&b, &first).await.unwrap(), Convergence::Deployed);
        // A new certificate, then the first one again (a rollback): its name is known.
        assert_eq!(converge(&a, &second).await.unwrap(), Convergence::Deployed);
        assert_eq!(converge(&a, &first).await.unwrap(), Convergence::Deployed);
        // A replay of the last call (its reply lost): accepted again.
        a.deploy(&first).await.unwrap();
    });
    let state = sim.state();
    let stored = state["cdn_certificates"].as_object().unwrap();
    assert_eq!(stored.len(), 2, "{state}");
    assert_eq!(
        stored[&cert_name(&first)]["fingerprint"],
        first.fingerprint()
    );
    assert_eq!(
        state["cdn_domains"]["b.example.com"]["fingerprint"],
        first.fingerprint()
    );
    // The simulator does model the duplicate: the same call without ForceSet is refused.
    let refused = block_on(client.call(
        Product::Cdn,
        "SetDomainServerCertificate",
        &[
            ("DomainName", "b.example.com".to_owned()),
            ("ServerCertificateStatus", "on".to_owned()),
            ("CertName", cert_name(&first)),
            ("ServerCertificate", first.fullchain_pem()),
            ("PrivateKey", first.key_pem.expose().to_owned()),
        ],
    ))
    .unwrap_err();
    assert_eq!(refused.code, "Certificate.Duplicated", "{refused}");
}

/// A duplicate refusal of the legacy set never parks the target: when the domain already
/// serves the certificate (the earlier call of a replay took effect) the deploy succeeds;
/// when it does not, a name duplicate is retried on a timer (transient). A content duplicate
/// under a name that is not ours stays `invalid`, saying what to do.
#[test]
fn legacy_cdn_duplicates_converge_instead_of_parking() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::cloud::alibaba::cdn::CdnTarget;
    use certkeeper::cloud::Target;
    use certkeeper::engine::converge::converge;
    let sim = RegionalSim::start("cdn_domains = [\"a.example.com\"]");
    let client = Arc::new(sim.client(&[]));
    let target = CdnTarget::new("a", legacy_cdn("a.example.com"), client);
    let served = testing::fresh(&["a.example.com"]);
    block_on(converge(&target, &served)).unwrap();
    let refuse_once = |code: &str| refuse_once(&sim, "SetDomainServerCertificate", code);
    for code in [
        "Certificate.Duplicated",
        "CertNameAlreadyExists",
        "CertificateContent.Duplicated",
    ] {
        refuse_once(code);
        block_on(target.deploy(&served)).unwrap_or_else(|e| panic!("{code}: {e}"));
    }
    let fresh = testing::fresh(&["a.example.com"]);
    refuse_once("Certificate.Duplicated");
    let error = block_on(target.deploy(&fresh)).unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient, "{error}");
    assert!(error.message.contains("retrying"), "{error}");
    refuse_once("CertificateContent.Duplicated");
    let error = block_on(target.deploy(&fresh)).unwrap_err();
    assert_eq!(error.class, ErrorClass::Invalid, "{error}");
    assert!(error.message.contains("another name"), "{error}");
    // Nothing injected: the fresh certificate goes live.
    block_on(target.deploy(&fresh)).unwrap();
    assert_eq!(
        sim.state()["cdn_domains"]["a.example.com"]["fingerprint"],
        fresh.fingerprint()
    );
}

/// A `cas` certificate is uploaded to the cas region the target's `CertRegion` names, and
/// the simulator finds a `CertId` only in the region it was uploaded to.
#[test]
fn cas_certificates_are_uploaded_to_the_region_the_target_references() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::cloud::alibaba::cdn::CdnTarget;
    use certkeeper::cloud::Target;
    use certkeeper::engine::converge::{converge, Convergence};
    let sim = RegionalSim::start("cdn_domains = [\"intl.example.com\", \"cn.example.com\"]");
    let client = Arc::new(sim.client(&[
        ("cdn", "cdn.aliyuncs.com"),
        ("cas", "cas.aliyuncs.com"),
        ("cas.ap-southeast-1", "cas.ap-southeast-1.aliyuncs.com"),
    ]));
    let settings = |domain: &str, region: &str| {
        toml::from_str(&format!(
            "domain = \"{domain}\"\ncert_type = \"cas\"\ncleanup = true\ncert_region = \"{region}\""
        ))
        .unwrap()
    };
    let intl = CdnTarget::new(
        "intl",
        settings("intl.example.com", "ap-southeast-1"),
        client.clone(),
    );
    let bundle = testing::fresh(&["intl.example.com", "cn.example.com"]);
    block_on(async {
        assert_eq!(
            converge(&intl, &bundle).await.unwrap(),
            Convergence::Deployed
        );
    });
    let state = sim.state();
    let uploads = state["cas_certificates"].as_array().unwrap();
    assert_eq!(uploads.len(), 1, "{state}");
    assert_eq!(uploads[0]["region"], "ap-southeast-1", "{state}");
    let intl_id = uploads[0]["id"].to_string();

    // The mainland target uploads its own copy to cn-hangzhou, and cleanup in one region
    // never touches the other's certificates.
    let cn = CdnTarget::new(
        "cn",
        settings("cn.example.com", "cn-hangzhou"),
        client.clone(),
    );
    block_on(converge(&cn, &bundle)).unwrap();
    let regions: Vec<String> = sim.state()["cas_certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["region"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(regions, ["ap-southeast-1", "cn-hangzhou"]);

    // A CertId from ap-southeast-1 referenced as a cn-hangzhou certificate is not found.
    let refused = block_on(client.call(
        Product::Cdn,
        "SetCdnDomainSSLCertificate",
        &[
            ("DomainName", "cn.example.com".to_owned()),
            ("SSLProtocol", "on".to_owned()),
            ("CertType", "cas".to_owned()),
            ("CertId", intl_id),
            ("CertRegion", "cn-hangzhou".to_owned()),
        ],
    ))
    .unwrap_err();
    assert_eq!(refused.code, "Certificate.NotFind", "{refused}");
    assert_eq!(refused.class, ErrorClass::NotFound);
    assert!(block_on(intl.observe()).unwrap().serves(&bundle));
}

/// Alibaba limits apply per account: two access keys of one account (`account` on both
/// credentials) share its buckets and stay under the limit together, where two keys shaped
/// separately exceed it. The limit here is a `rate_limits` override, so the config's
/// overrides reach the buckets too.
#[test]
fn keys_of_one_account_share_its_rate_limit_buckets() {
    use certkeeper::cloud::alibaba::client::AccountLimiters;
    const SECOND: (&str, &str) = ("LTAIsecond", "second-secret");
    let seed = format!(
        "cdn_domains = [\"www.example.com\"]\n\
         rate_limits = {{ DescribeDomainCertificateInfo = 4 }}\n\
         key_accounts = {{ {ID} = \"1234\", {} = \"1234\" }}\n\n\
         [[alibaba.accounts]]\naccess_key_id = \"{}\"\naccess_key_secret = \"{}\"\n",
        SECOND.0, SECOND.0, SECOND.1
    );
    // Two keys, sixteen calls each at once; returns the throttled replies seen. Sixteen, not
    // fewer: the separate-keys run must exceed the account's rate by a wide margin (about a
    // dozen refusals), so a slow machine cannot make it look shaped.
    let run = |shared: bool| -> usize {
        let sim = RegionalSim::start(&seed);
        let limiters = AccountLimiters::default();
        let clients: Vec<Arc<AlibabaClient>> = [(ID, SECRET), SECOND]
            .into_iter()
            .map(|(id, secret)| {
                let mut creds = ResolvedCredentials::new(id, Provider::Alibaba, id, secret)
                    .with_endpoint(&sim.sim.url);
                creds
                    .rate_limits
                    .insert("DescribeDomainCertificateInfo".into(), 4.0);
                if shared {
                    creds = creds.with_account("1234");
                }
                let http = reqwest::Client::builder().no_proxy().build().unwrap();
                Arc::new(limiters.client(creds, http))
            })
            .collect();
        let calls = |client: Arc<AlibabaClient>| async move {
            let mut throttled = 0;
            for _ in 0..16 {
                let reply = client
                    .call(
                        Product::Cdn,
                        "DescribeDomainCertificateInfo",
                        &[("DomainName", "www.example.com".to_owned())],
                    )
                    .await;
                match reply {
                    Ok(_) => {}
                    Err(error) if error.class == ErrorClass::Throttled => throttled += 1,
                    Err(error) => panic!("{error}"),
                }
            }
            throttled
        };
        let (first, second) =
            block_on(async { tokio::join!(calls(clients[0].clone()), calls(clients[1].clone())) });
        first + second
    };
    assert_eq!(run(true), 0, "one account's keys shaped together");
    // 32 calls at twice the account's rate for about three seconds: the buckets of one key
    // each cannot keep the account under its 4/s (plus 4 in reserve).
    assert!(run(false) > 0, "separate keys were not throttled");
}

/// `check` refuses two credentials of one account that disagree on `rate_limits`, a rate
/// that is not a positive number, and the keys on a vendor they do not apply to.
#[test]
fn account_and_rate_limits_are_checked() {
    let config = |extra: &str| {
        format!(
            "[daemon]\nallow_empty = true\n\n\
             [credentials.a]\nprovider = \"alibaba\"\naccess_key_id = \"AK1\"\naccess_key_secret_env = \"S1\"\n\
             account = \"1234\"\nrate_limits = {{ SetCdnDomainSSLCertificate = 20 }}\n\n\
             [credentials.b]\nprovider = \"alibaba\"\naccess_key_id = \"AK2\"\naccess_key_secret_env = \"S2\"\n\
             account = \"1234\"\n{extra}\n"
        )
    };
    let good = config("rate_limits = { SetCdnDomainSSLCertificate = 20 }");
    certkeeper::config::load_str("good.toml", &good).unwrap();
    let error = certkeeper::config::load_str(
        "bad.toml",
        &config("rate_limits = { SetCdnDomainSSLCertificate = 0 }\n\n[credentials.q]\nprovider = \"qingcloud\"\naccess_key_id = \"Q\"\naccess_key_secret_env = \"S3\"\nzone = \"pek3\"\naccount = \"x\""),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("credentials.b.rate_limits: differs from credentials.a.rate_limits"),
        "{error}"
    );
    assert!(
        error.contains("credentials.b.rate_limits.SetCdnDomainSSLCertificate: must be"),
        "{error}"
    );
    assert!(
        error.contains("credentials.q.account: applies only to provider = \"alibaba\""),
        "{error}"
    );
    assert!(error.contains("bad.toml:"), "{error}");
}

const RDS_SEED: &str = "rds_ssl_delay_ms = 50\n\n\
    [[alibaba.rds_instances]]\nid = \"rm-my\"\nengine = \"MySQL\"\nconnection_string = \"rm-my.mysql.rds.aliyuncs.com\"\n\n\
    [[alibaba.rds_instances]]\nid = \"rm-mssql\"\nengine = \"SQLServer\"\nconnection_string = \"rm-mssql.sqlserver.rds.aliyuncs.com\"\n";

fn rds_target(
    client: &Arc<AlibabaClient>,
    instance: &str,
    connection: &str,
    extra: &str,
) -> certkeeper::cloud::alibaba::rds::RdsTarget {
    let settings = toml::from_str(&format!(
        "instance_id = \"{instance}\"\nconnection_string = \"{connection}\"\npoll_interval_secs = 0.02\n{extra}"
    ))
    .unwrap();
    certkeeper::cloud::alibaba::rds::RdsTarget::new(instance, settings, client.clone())
}

/// The client's engine table and the simulator's agree on every parameter both know.
#[test]
fn rds_engine_tables_agree() {
    use certkeeper::cloud::alibaba::rds::ENGINE_PARAMETERS;
    for (parameter, _, engines) in ENGINE_PARAMETERS {
        let (_, simulated) = sim_tables::RDS_ENGINE_PARAMETERS
            .iter()
            .find(|(name, _)| name == parameter)
            .unwrap_or_else(|| panic!("the simulator has no row for {parameter}"));
        assert_eq!(engines, simulated, "{parameter}");
    }
}

/// The target learns the engine and refuses, before any write, what the engine cannot
/// take (PostgreSQL-only client CA on MySQL, a PEM certificate on SQL Server): an
/// `unsupported` error naming the key, from `observe` too (what `plan` shows). What the
/// engine can take deploys; the simulator refuses the same parameters when sent anyway.
#[test]
fn rds_settings_the_engine_cannot_take_are_refused_before_any_write() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::cloud::Target;
    use certkeeper::engine::converge::{converge, Convergence};
    let sim = RegionalSim::start(RDS_SEED);
    let client = Arc::new(sim.client(&[]));
    let mysql = "rm-my.mysql.rds.aliyuncs.com";
    let bundle = testing::fresh(&[mysql]);
    let asks_too_much = rds_target(
        &client,
        "rm-my",
        mysql,
        "client_ca_cert = \"pem\"\nacl = \"cert\"\ntls_version = \"1.2\"",
    );
    let error = block_on(converge(&asks_too_much, &bundle)).unwrap_err();
    assert_eq!(error.class, ErrorClass::Unsupported, "{error}");
    for key in ["client_ca_cert", "acl", "tls_version"] {
        assert!(error.message.contains(key), "{key}: {error}");
    }
    assert!(error.message.contains("MySQL"), "{error}");
    let planned = block_on(asks_too_much.observe()).unwrap_err();
    assert_eq!(planned.message, error.message);

    let sqlserver = rds_target(
        &client,
        "rm-mssql",
        "rm-mssql.sqlserver.rds.aliyuncs.com",
        "",
    );
    let error = block_on(converge(&sqlserver, &bundle)).unwrap_err();
    assert_eq!(error.class, ErrorClass::Unsupported, "{error}");
    assert!(error.message.contains("PFX"), "{error}");

    let stated_wrong = rds_target(&client, "rm-my", mysql, "engine = \"PostgreSQL\"");
    let error = block_on(stated_wrong.observe()).unwrap_err();
    assert_eq!(error.class, ErrorClass::Invalid, "{error}");
    assert!(error.message.contains("runs MySQL"), "{error}");
    let stats = sim.sim.simulator.stats_json();
    assert!(stats["alibaba"]["ModifyDBInstanceSSL"].is_null(), "{stats}");

    // What MySQL takes goes through.
    let fits = rds_target(&client, "rm-my", mysql, "force_encryption = true");
    assert_eq!(
        block_on(converge(&fits, &bundle)).unwrap(),
        Convergence::Deployed
    );

    // Sent anyway, the simulator refuses as seed 000 documents.
    for (name, value) in [("TlsVersion", "1.2"), ("ClientCAEnabled", "1")] {
        let refused = block_on(client.call(
            Product::Rds,
            "ModifyDBInstanceSSL",
            &[
                ("DBInstanceId", "rm-my".to_owned()),
                ("ConnectionString", mysql.to_owned()),
                ("SSLEnabled", "1".to_owned()),
                (name, value.to_owned()),
            ],
        ))
        .unwrap_err();
        assert_eq!(
            refused.code, "InvalidDBInstanceEngineType.Format",
            "{refused}"
        );
        assert_eq!(refused.class, ErrorClass::Unsupported);
    }
}

/// With `engine` stated, `check` refuses what that engine cannot take, naming the key.
#[test]
fn check_refuses_rds_settings_the_stated_engine_cannot_take() {
    let config = |extra: &str| {
        format!(
            "[daemon]\nallow_empty = true\n\n\
             [credentials.ali]\nprovider = \"alibaba\"\naccess_key_id = \"AK\"\naccess_key_secret_env = \"S\"\n\n\
             [[target]]\nname = \"db\"\nkind = \"alibaba-rds\"\ncredentials = \"ali\"\n\
             instance_id = \"rm-1\"\nconnection_string = \"rm-1.mysql.rds.aliyuncs.com\"\n{extra}\n"
        )
    };
    certkeeper::config::load_str(
        "ok.toml",
        &config("engine = \"MySQL\"\nforce_encryption = true"),
    )
    .unwrap();
    let error = certkeeper::config::load_str(
        "db.toml",
        &config("engine = \"MySQL\"\nclient_ca_cert = \"pem\"\ntls_version = \"1.2\""),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("target[0].client_ca_cert: MySQL does not take client_ca_cert"),
        "{error}"
    );
    assert!(
        error.contains("target[0].tls_version: MySQL does not take tls_version"),
        "{error}"
    );
    let error = certkeeper::config::load_str("db.toml", &config("engine = \"MariaDB\""))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("target[0].engine: must be one of"),
        "{error}"
    );
}

/// PostgreSQL keeps a client CA and CRL until told otherwise: when the config drops them,
/// the next deploy turns them off (`ClientCrlEnabled=0`, then `ClientCAEnabled=0`).
#[test]
fn rds_postgres_client_ca_and_crl_are_turned_off_when_the_config_drops_them() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::engine::converge::{converge, Convergence};
    let sim = RegionalSim::start(
        "rds_ssl_delay_ms = 50\n\n[[alibaba.rds_instances]]\nid = \"pgm-1\"\nengine = \"PostgreSQL\"\nconnection_string = \"pgm-1.pg.rds.aliyuncs.com\"\n",
    );
    let client = Arc::new(sim.client(&[]));
    let host = "pgm-1.pg.rds.aliyuncs.com";
    let ca = testing::fresh(&["client-ca.example.com"]);
    let crl = "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----";
    let steps = [
        (
            format!(
                "client_ca_cert = '''{}'''\nclient_crl = '''{crl}'''",
                ca.leaf_pem
            ),
            (true, true),
        ),
        (
            format!("client_ca_cert = '''{}'''", ca.leaf_pem),
            (true, false),
        ),
        (String::new(), (false, false)),
    ];
    for (extra, (client_ca, client_crl)) in steps {
        let target = rds_target(&client, "pgm-1", host, &extra);
        let bundle = testing::fresh(&[host]);
        assert_eq!(
            block_on(converge(&target, &bundle)).unwrap(),
            Convergence::Deployed
        );
        let state = &sim.state()["rds_instances"]["pgm-1"];
        assert_eq!(state["client_ca"], client_ca, "{extra}: {state}");
        assert_eq!(state["client_crl"], client_crl, "{extra}: {state}");
    }
}

/// What the operator sees on a config asking a MySQL instance for a PostgreSQL-only client
/// CA, no `engine` stated: `check` asks the instance its engine and refuses the key (exit
/// 78, the key's file line, the engine named); `check --offline` cannot know; `plan` reads
/// the target as an error naming the key and the engine, exit 1. Nothing is written.
#[test]
fn plan_names_the_setting_the_rds_engine_cannot_take() {
    let sim = support::start_sim(&format!(
        "[[alibaba.accounts]]\naccess_key_id = \"{ID}\"\naccess_key_secret = \"{SECRET}\"\n\n[alibaba]\n{RDS_SEED}"
    ));
    let directory = tempfile::tempdir().unwrap();
    let config = rds_mysql_config(directory.path(), &sim.url);
    let env = [("FIDELITY_SECRET", SECRET)];
    let checked = support::certkeeper(&config, &["check"], &env);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(78), "{checked:?}");
    assert!(
        stderr.contains("target[0].client_ca_cert: MySQL does not take client_ca_cert"),
        "{stderr}"
    );
    assert!(stderr.contains("certkeeper.toml:26:"), "{stderr}");
    assert!(stderr.contains("instance rm-my runs MySQL"), "{stderr}");
    let offline = support::certkeeper(&config, &["check", "--offline"], &env);
    assert_eq!(offline.status.code(), Some(0), "{offline:?}");
    let planned = support::certkeeper(&config, &["plan"], &env);
    let stdout = String::from_utf8_lossy(&planned.stdout);
    assert_eq!(planned.status.code(), Some(1), "{planned:?}");
    assert!(stdout.contains("1 could not be read"), "{stdout}");
    assert!(
        stdout.contains("MySQL does not take client_ca_cert"),
        "{stdout}"
    );
    let stats = sim.simulator.stats_json();
    assert!(stats["alibaba"]["ModifyDBInstanceSSL"].is_null(), "{stats}");
}

/// VOD keeps uploaded certificates by name and has no ForceSet (seed 001). A duplicate
/// refusal never parks the target: a replay whose domain already serves the certificate is
/// done with no further write; a certificate VOD already holds under another name
/// (`CertificateContent.Duplicated`) or a name holding another certificate
/// (`CertNameAlreadyExists`) is set through cas instead, and the domain serves it.
#[test]
fn vod_duplicates_converge_instead_of_parking() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::cloud::alibaba::cdn::cert_name;
    use certkeeper::cloud::alibaba::vod::VodTarget;
    use certkeeper::cloud::Target;
    use certkeeper::engine::converge::{converge, Convergence};
    let sim = RegionalSim::start("vod_domains = [\"a.example.com\", \"b.example.com\"]");
    let client = Arc::new(sim.client(&[]));
    let upload = |domain: &str, name: String, bundle: &certkeeper::cert::CertificateBundle| {
        block_on(client.call(
            Product::Vod,
            "SetVodDomainSSLCertificate",
            &[
                ("DomainName", domain.to_owned()),
                ("SSLProtocol", "on".to_owned()),
                ("CertType", "upload".to_owned()),
                ("CertName", name),
                ("SSLPub", bundle.fullchain_pem()),
                ("SSLPri", bundle.key_pem.expose().to_owned()),
            ],
        ))
    };
    let target = |domain: &str| {
        VodTarget::new(
            domain,
            toml::from_str(&format!("domain = \"{domain}\"")).unwrap(),
            client.clone(),
        )
    };
    let a = target("a.example.com");
    let b = target("b.example.com");

    // The operator uploaded the same certificate by hand under a name of their own.
    let shared = testing::fresh(&["a.example.com", "b.example.com"]);
    upload("b.example.com", "manual".to_owned(), &shared).unwrap();
    let refused = upload("a.example.com", cert_name(&shared), &shared).unwrap_err();
    assert_eq!(refused.code, "CertificateContent.Duplicated", "{refused}");
    assert_eq!(
        block_on(converge(&a, &shared)).unwrap(),
        Convergence::Deployed
    );
    let state = sim.state();
    assert_eq!(state["vod_domains"]["a.example.com"]["cert_type"], "cas");
    assert_eq!(
        state["vod_domains"]["a.example.com"]["fingerprint"],
        shared.fingerprint()
    );
    assert_eq!(state["cas_certificates"].as_array().unwrap().len(), 1);

    // A name VOD holds for another certificate: refused by name, set through cas.
    let next = testing::fresh(&["a.example.com", "b.example.com"]);
    let other = testing::fresh(&["a.example.com", "b.example.com"]);
    upload("b.example.com", cert_name(&next), &other).unwrap();
    let refused = upload("a.example.com", cert_name(&next), &next).unwrap_err();
    assert_eq!(refused.code, "CertNameAlreadyExists", "{refused}");
    assert_eq!(refused.class, ErrorClass::Invalid);
    block_on(a.deploy(&next)).unwrap();
    assert!(block_on(a.observe()).unwrap().serves(&next));

    // A replay: the first call took effect, its reply was lost, the second is refused as a
    // duplicate. The domain serves the certificate: done, nothing else written.
    let own = testing::fresh(&["b.example.com"]);
    block_on(converge(&b, &own)).unwrap();
    let writes = sim.state()["vod_domains"]["b.example.com"]["writes"].clone();
    let uploads = sim.state()["cas_certificates"].as_array().unwrap().len();
    for code in [
        "CertNameAlreadyExists",
        "Certificate.Duplicated",
        "CertificateContent.Duplicated",
    ] {
        refuse_once(&sim, "SetVodDomainSSLCertificate", code);
        block_on(b.deploy(&own)).unwrap_or_else(|e| panic!("{code}: {e}"));
    }
    let state = sim.state();
    assert_eq!(state["vod_domains"]["b.example.com"]["writes"], writes);
    assert_eq!(state["cas_certificates"].as_array().unwrap().len(), uploads);
    assert_eq!(
        state["vod_domains"]["b.example.com"]["fingerprint"],
        own.fingerprint()
    );
}

/// Makes the simulator refuse the next `action` with the duplicate `code` (status 400).
fn refuse_once(sim: &RegionalSim, action: &str, code: &str) {
    sim.sim
        .simulator
        .add_faults(vec![certkeeper::cloud::sim::FaultRule {
            vendor: "alibaba".into(),
            action: Some(action.into()),
            status: 400,
            code: Some(code.into()),
            message: Some("injected duplicate".into()),
            count: Some(1),
            probability: None,
            delay_ms: None,
        }]);
}

/// A client whose OSS requests for `bucket` (in cn-beijing) reach the simulator, signed
/// with `secret`.
fn oss_client(sim: &RegionalSim, bucket: &str, secret: &str) -> AlibabaClient {
    let creds = ResolvedCredentials::new("ali", Provider::Alibaba, ID, secret)
        .with_endpoint(&sim.sim.url)
        .with_product_endpoint("oss", &sim.url("oss-cn-beijing.aliyuncs.com"));
    let http = reqwest::Client::builder()
        .no_proxy()
        .resolve(&format!("{bucket}.oss-cn-beijing.aliyuncs.com"), sim.addr)
        .build()
        .unwrap();
    AlibabaClient::new(creds, http, default_rate_limits())
}

/// SQL Server takes its custom certificate as a PFX in OSS (seed 000 `Certificate`,
/// `PassWord`): the target uploads a PFX of the chain and key under a fresh password to the
/// configured bucket and names it as the seed shows; the simulator opens it with the
/// password and installs the leaf. A wrong password, a file that is no PFX, an object in
/// another region or a missing one are refused as `InvalidServerCertOrPrivateKey`; a
/// bucket on a MySQL instance is refused before any write, naming `oss_bucket`.
#[test]
fn rds_sqlserver_takes_its_certificate_as_a_pfx_in_oss() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::cloud::alibaba::oss::{self, OssLocation};
    use certkeeper::cloud::Target;
    use certkeeper::engine::converge::{converge, Convergence};
    let sim = RegionalSim::start(RDS_SEED);
    let client = Arc::new(oss_client(&sim, "certs-bucket", SECRET));
    let connection = "rm-mssql.sqlserver.rds.aliyuncs.com";
    let bundle = testing::fresh(&[connection]);
    let oss_keys =
        "oss_bucket = \"certs-bucket\"\noss_region = \"cn-beijing\"\noss_internal = true";
    let target = rds_target(
        &client,
        "rm-mssql",
        connection,
        &format!("{oss_keys}\ntls_version = \"1.2\"\nforce_encryption = true"),
    );
    assert_eq!(
        block_on(converge(&target, &bundle)).unwrap(),
        Convergence::Deployed
    );
    let state = sim.state();
    let instance = &state["rds_instances"]["rm-mssql"];
    assert_eq!(instance["fingerprint"], bundle.fingerprint(), "{state}");
    assert_eq!(instance["ca_type"], "custom");
    assert_eq!(instance["ssl"], true);
    let object = oss::object_name("rm-mssql", &bundle);
    assert_eq!(
        state["oss_objects"],
        serde_json::json!([format!("certs-bucket/{object}")])
    );
    assert!(block_on(target.observe()).unwrap().serves(&bundle));

    // What the simulator refuses, as seed 000 documents.
    let location = OssLocation {
        region: "cn-beijing".into(),
        bucket: "certs-bucket".into(),
        internal: true,
    };
    let modify =
        |certificate: String, password: &str| modify_sqlserver(&client, certificate, password);
    // Let the instance finish applying the deploy above before each refused call.
    let running = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while block_on(target.status()).unwrap() != "Running" {
            assert!(std::time::Instant::now() < deadline, "instance stays busy");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let pfx = oss::build_pfx(&bundle).unwrap();
    block_on(oss::put_object(
        &client,
        &location,
        "mine.pfx",
        pfx.der.clone(),
    ))
    .unwrap();
    block_on(oss::put_object(
        &client,
        &location,
        "junk.pfx",
        b"not a pfx".to_vec(),
    ))
    .unwrap();
    let beijing = location.certificate_parameter("mine.pfx");
    let shanghai = "oss-cn-shanghai.aliyuncs.com:certs-bucket:mine.pfx".to_owned();
    for (certificate, password) in [
        (beijing.clone(), "wrong-password"),
        (
            location.certificate_parameter("junk.pfx"),
            pfx.password.expose(),
        ),
        (
            location.certificate_parameter("absent.pfx"),
            pfx.password.expose(),
        ),
        (shanghai, pfx.password.expose()),
    ] {
        running();
        let refused = modify(certificate.clone(), password).unwrap_err();
        assert_eq!(
            refused.code, "InvalidServerCertOrPrivateKey",
            "{certificate}: {refused}"
        );
        assert_eq!(refused.class, ErrorClass::Invalid);
        assert!(!format!("{refused} {refused:?}").contains(pfx.password.expose()));
    }
    running();
    modify(beijing, pfx.password.expose()).unwrap();

    // An upload signed with another secret is refused by OSS, as an auth failure.
    let forged = oss_client(&sim, "certs-bucket", "not-the-secret");
    let error = block_on(oss::put_object(&forged, &location, "x.pfx", pfx.der)).unwrap_err();
    assert_eq!(error.code, "SignatureDoesNotMatch", "{error}");
    assert_eq!(error.class, ErrorClass::Auth);

    // A bucket on a MySQL instance: refused before any write, naming the key.
    let mysql = rds_target(&client, "rm-my", "rm-my.mysql.rds.aliyuncs.com", oss_keys);
    let error = block_on(mysql.observe()).unwrap_err();
    assert_eq!(error.class, ErrorClass::Unsupported, "{error}");
    assert!(error.message.contains("oss_bucket"), "{error}");
}

/// The PFX certkeeper uploads is one OpenSSL reads with its password (an implementation
/// other than the simulator's), holding the leaf first and the key, and refuses to open
/// with another password.
#[test]
fn openssl_reads_the_sql_server_pfx() {
    use certkeeper::cert::bundle::testing;
    let bundle = testing::fresh(&["db.example.com"]);
    let pfx = certkeeper::cloud::alibaba::oss::build_pfx(&bundle).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("cert.pfx");
    std::fs::write(&file, &pfx.der).unwrap();
    let openssl = |password: &str, extra: &[&str]| {
        std::process::Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(&file)
            .args(["-passin", &format!("pass:{password}")])
            .args(extra)
            .output()
            .expect("the openssl command (scripts/test installs it)")
    };
    let certs = openssl(pfx.password.expose(), &["-nokeys", "-clcerts"]);
    assert!(
        certs.status.success(),
        "{}",
        String::from_utf8_lossy(&certs.stderr)
    );
    let leaf = String::from_utf8_lossy(&certs.stdout);
    let leaf = certkeeper::cert::bundle::LeafInfo::from_pem("openssl output", &leaf).unwrap();
    assert_eq!(leaf.fingerprint, bundle.fingerprint());
    let key = openssl(pfx.password.expose(), &["-nocerts", "-nodes"]);
    assert!(key.status.success());
    assert!(String::from_utf8_lossy(&key.stdout).contains("BEGIN PRIVATE KEY"));
    let wrong = openssl("wrong", &["-nokeys"]);
    assert!(!wrong.status.success());
}

/// The current CDN API's upload refused as a duplicate (codes of seeds 001/002 for the upload
/// APIs) converges as VOD's does: already served is done with no write; not served yet is
/// set through cas, and the domain serves the certificate.
#[test]
fn current_cdn_upload_duplicates_converge_instead_of_parking() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::cloud::alibaba::cdn::CdnTarget;
    use certkeeper::cloud::Target;
    use certkeeper::engine::converge::converge;
    let sim = RegionalSim::start("cdn_domains = [\"a.example.com\"]");
    let client = Arc::new(sim.client(&[]));
    let target = CdnTarget::new(
        "a",
        toml::from_str("domain = \"a.example.com\"").unwrap(),
        client,
    );
    let served = testing::fresh(&["a.example.com"]);
    block_on(converge(&target, &served)).unwrap();
    for code in [
        "Certificate.Duplicated",
        "CertNameAlreadyExists",
        "CertificateContent.Duplicated",
    ] {
        refuse_once(&sim, "SetCdnDomainSSLCertificate", code);
        block_on(target.deploy(&served)).unwrap_or_else(|e| panic!("{code}: {e}"));
    }
    let state = sim.state();
    assert_eq!(
        state["cdn_domains"]["a.example.com"]["writes"], 1,
        "{state}"
    );
    assert_eq!(state["cas_certificates"].as_array().unwrap().len(), 0);

    let fresh = testing::fresh(&["a.example.com"]);
    refuse_once(&sim, "SetCdnDomainSSLCertificate", "CertNameAlreadyExists");
    block_on(target.deploy(&fresh)).unwrap();
    let state = sim.state();
    let domain = &state["cdn_domains"]["a.example.com"];
    assert_eq!(domain["fingerprint"], fresh.fingerprint(), "{state}");
    assert_eq!(domain["cert_type"], "cas");
    assert_eq!(state["cas_certificates"].as_array().unwrap().len(), 1);
}

/// A config deploying a local-CA certificate to MySQL instance `rm-my` through `endpoint`,
/// asking it for a PostgreSQL-only client CA and stating no `engine`; its secret is read
/// from `FIDELITY_SECRET`.
fn rds_mysql_config(directory: &std::path::Path, endpoint: &str) -> std::path::PathBuf {
    let config = directory.join("certkeeper.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{state}\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\n\
             [credentials.ali]\nprovider = \"alibaba\"\naccess_key_id = \"{ID}\"\n\
             access_key_secret_env = \"FIDELITY_SECRET\"\nendpoint = \"{endpoint}\"\n\n\
             [local_ca.internal]\nleaf_lifetime = \"30d\"\n\n\
             [[certificate]]\nname = \"db\"\ndomains = [\"rm-my.mysql.rds.aliyuncs.com\"]\n\
             source = {{ local_ca = \"internal\" }}\ndeploy_to = [\"rds-my\"]\n\n\
             [[target]]\nname = \"rds-my\"\nkind = \"alibaba-rds\"\ncredentials = \"ali\"\n\
             instance_id = \"rm-my\"\nconnection_string = \"rm-my.mysql.rds.aliyuncs.com\"\n\
             client_ca_cert = \"pem\"\n",
            state = directory.join("state").display(),
            port = support::free_port(),
        ),
    )
    .unwrap();
    config
}

/// `check` cannot ask an instance behind an endpoint nothing listens on: it says nothing
/// about the engine (exit 0) and leaves the refusal to `run` and `plan`.
#[test]
fn check_leaves_an_instance_it_cannot_ask_to_run() {
    let directory = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let config = rds_mysql_config(directory.path(), &closed);
    let checked = support::certkeeper(&config, &["check"], &[("FIDELITY_SECRET", SECRET)]);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
}

/// The simulator reads a PFX OpenSSL made (`openssl pkcs12 -export`, its default profile), not
/// only certkeeper's own: it installs that certificate on the SQL Server instance.
#[test]
fn the_simulator_installs_a_pfx_made_by_openssl() {
    use certkeeper::cert::bundle::testing;
    use certkeeper::cloud::alibaba::oss::{self, OssLocation};
    let sim = RegionalSim::start(RDS_SEED);
    let client = oss_client(&sim, "certs-bucket", SECRET);
    let connection = "rm-mssql.sqlserver.rds.aliyuncs.com";
    let bundle = testing::fresh(&[connection]);
    let directory = tempfile::tempdir().unwrap();
    let (cert, key, pfx) = (
        directory.path().join("cert.pem"),
        directory.path().join("key.pem"),
        directory.path().join("made.pfx"),
    );
    std::fs::write(&cert, bundle.fullchain_pem()).unwrap();
    std::fs::write(&key, bundle.key_pem.expose()).unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-passout",
            "pass:made-by-openssl",
            "-in",
        ])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&pfx)
        .output()
        .expect("the openssl command (scripts/test installs it)");
    assert!(made.status.success(), "{made:?}");
    let location = OssLocation {
        region: "cn-beijing".into(),
        bucket: "certs-bucket".into(),
        internal: false,
    };
    let der = std::fs::read(&pfx).unwrap();
    block_on(oss::put_object(&client, &location, "made.pfx", der)).unwrap();
    modify_sqlserver(
        &client,
        location.certificate_parameter("made.pfx"),
        "made-by-openssl",
    )
    .unwrap();
    assert_eq!(
        sim.state()["rds_instances"]["rm-mssql"]["fingerprint"],
        bundle.fingerprint()
    );
}

/// ModifyDBInstanceSSL on `rm-mssql` (RDS_SEED) with a PFX `certificate` and its password.
fn modify_sqlserver(
    client: &AlibabaClient,
    certificate: String,
    password: &str,
) -> Result<serde_json::Value, certkeeper::error::CloudError> {
    block_on(client.call(
        Product::Rds,
        "ModifyDBInstanceSSL",
        &[
            ("DBInstanceId", "rm-mssql".to_owned()),
            (
                "ConnectionString",
                "rm-mssql.sqlserver.rds.aliyuncs.com".to_owned(),
            ),
            ("SSLEnabled", "1".to_owned()),
            ("Certificate", certificate),
            ("PassWord", password.to_owned()),
        ],
    ))
}
