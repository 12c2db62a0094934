//! Vendor fidelity for Huawei and QingCloud (issue 13): the client and the simulator each
//! keep their own tables (error codes, messages, value sets), both written from the vendor
//! documents, and these tests compare them. A disagreement is allowed only as a listed,
//! commented exception, so a wrong client row can no longer pass because the simulator
//! shares it. (Neither client has rate-limit constants: there are no rate tables to compare.)

#![cfg(feature = "sim")]

use certkeeper::error::ErrorClass;

mod huawei {
    use super::*;
    use certkeeper::cloud::huawei::client;
    use certkeeper::cloud::huawei::gaussdb::EncryptionStatus;
    use certkeeper::cloud::huawei::sim::{self, BackupEncryption, DocumentedRemedy};

    /// The classes that honour what the vendor documents for a row.
    fn allowed(remedy: DocumentedRemedy) -> &'static [ErrorClass] {
        match remedy {
            DocumentedRemedy::FixRequest => &[ErrorClass::Invalid],
            DocumentedRemedy::FixCredentials => &[ErrorClass::Auth],
            DocumentedRemedy::Missing => &[ErrorClass::NotFound],
            DocumentedRemedy::WaitForResource => &[ErrorClass::Busy],
            // Retried on a timer, never parked until the config changes.
            DocumentedRemedy::WaitForOutsideChange => &[ErrorClass::Busy, ErrorClass::Transient],
            DocumentedRemedy::SlowDown => &[ErrorClass::Throttled],
            DocumentedRemedy::VendorFault => &[ErrorClass::Transient],
            DocumentedRemedy::AskVendor => &[ErrorClass::Unsupported],
        }
    }

    /// Deliberate disagreements: (code, the client's class, why). None today.
    const EXCEPTIONS: &[(&str, ErrorClass, &str)] = &[];

    /// Client codes the simulator never answers with, and why the client keeps them.
    const CLIENT_ONLY: &[(&str, &str)] = &[
        (
            "DBS.200018",
            "RDS table row (instance not available); not in the seeds",
        ),
        (
            "KMS.0205",
            "DEW table row (invalid key id); config validation refuses it first",
        ),
        (
            "KMS.0306",
            "DEW table row (no permission to use the key); not in the seeds",
        ),
    ];

    fn body(row: &sim::DocumentedError) -> Vec<u8> {
        // DNS answers `{code, message}`, the other products `{error_code, error_msg}`.
        let value = if row.code.starts_with("DNS.") {
            serde_json::json!({"code": row.code, "message": row.message})
        } else {
            serde_json::json!({"error_code": row.code, "error_msg": row.message})
        };
        value.to_string().into_bytes()
    }

    #[test]
    fn every_simulator_error_is_classified_as_its_documented_remedy() {
        let mut disagreements = Vec::new();
        for row in sim::ERRORS {
            let error = client::classify("op", row.status, None, None, &body(row));
            assert_eq!(
                error.code, row.code,
                "the client reads the simulator's envelope"
            );
            match EXCEPTIONS.iter().find(|(code, _, _)| *code == row.code) {
                Some((_, class, why)) => assert_eq!(error.class, *class, "{}: {why}", row.code),
                None if !allowed(row.remedy).contains(&error.class) => {
                    disagreements.push((row.code, row.remedy, error.class))
                }
                None => {}
            }
        }
        assert!(disagreements.is_empty(), "{disagreements:?}");
    }

    #[test]
    fn every_client_code_is_in_the_simulator_table_or_known_to_be_client_only() {
        for code in client::ERROR_TABLE.rows().iter().map(|row| row.code) {
            let in_sim = sim::ERRORS.iter().any(|row| row.code == code);
            let client_only = CLIENT_ONLY.iter().any(|(known, _)| *known == code);
            assert!(
                in_sim != client_only,
                "{code}: in simulator {in_sim}, client-only {client_only}"
            );
        }
        for (code, _, _) in EXCEPTIONS {
            assert!(sim::ERRORS.iter().any(|row| row.code == *code), "{code}");
        }
    }

    #[test]
    fn encryption_values_agree_in_both_directions() {
        for value in BackupEncryption::ALL {
            let read = EncryptionStatus::parse(value.as_str()).unwrap();
            assert_eq!(read.as_str(), value.as_str());
            // The seed: case-insensitive on both sides.
            let upper = value.as_str().to_ascii_uppercase();
            assert_eq!(EncryptionStatus::parse(&upper), Some(read));
            assert_eq!(BackupEncryption::parse(&upper), Some(value));
        }
        for sent in [EncryptionStatus::On, EncryptionStatus::Off] {
            assert!(BackupEncryption::parse(sent.as_str()).is_some(), "{sent:?}");
        }
        assert_eq!(sim::ENCRYPTION_TYPE, "kms");
    }
}

mod qingcloud {
    use super::*;
    use certkeeper::cloud::qingcloud::client;
    use certkeeper::cloud::qingcloud::jobs::JobStatus;
    use certkeeper::cloud::qingcloud::mysql_plus::{self, ConfigsslForm};
    use certkeeper::cloud::qingcloud::sim::{self, DocumentedRemedy};

    fn allowed(remedy: DocumentedRemedy) -> &'static [ErrorClass] {
        match remedy {
            DocumentedRemedy::FixRequest => &[ErrorClass::Invalid],
            DocumentedRemedy::FixCredentials => &[ErrorClass::Auth],
            // A wrong host clock is not fixed by a quick retry: an operator must act.
            DocumentedRemedy::FixClock => &[ErrorClass::Auth],
            // The table does not say which: the safe class is a timed retry.
            DocumentedRemedy::PermissionOrState => &[ErrorClass::Busy],
            DocumentedRemedy::Missing => &[ErrorClass::NotFound],
            DocumentedRemedy::Pay => &[ErrorClass::Billing],
            // The daily API quota resets at 00:00: retried across operations, like billing.
            DocumentedRemedy::Quota => &[ErrorClass::Billing, ErrorClass::Throttled],
            DocumentedRemedy::AskVendor => &[ErrorClass::Unsupported],
            DocumentedRemedy::VendorFault => &[ErrorClass::Transient],
            // The SDK retries 5100 like 5000, with backoff.
            DocumentedRemedy::ServerBusy => &[ErrorClass::Transient, ErrorClass::Throttled],
            DocumentedRemedy::WaitForResource => &[ErrorClass::Busy],
        }
    }

    /// Deliberate disagreements: (ret_code, the client's class, why). None today.
    const EXCEPTIONS: &[(i64, ErrorClass, &str)] = &[];

    #[test]
    fn the_client_and_the_simulator_list_the_same_ret_codes() {
        let client_codes: Vec<i64> = client::ERROR_TABLE
            .rows()
            .iter()
            .map(|row| row.code.parse().unwrap())
            .collect();
        let sim_codes: Vec<i64> = sim::RET_CODES.iter().map(|row| row.ret_code).collect();
        assert_eq!(client_codes, sim_codes);
        for row in sim::RET_CODES {
            assert!(certkeeper::cloud::registry::is_known_code(
                "qingcloud",
                &row.ret_code.to_string()
            ));
        }
    }

    #[test]
    fn every_ret_code_is_classified_as_its_documented_remedy() {
        let mut disagreements = Vec::new();
        for row in sim::RET_CODES {
            let body = serde_json::json!({"ret_code": row.ret_code, "message": row.message});
            let error = client::parse_envelope("op", 200, body.to_string().as_bytes()).unwrap_err();
            match EXCEPTIONS.iter().find(|(code, _, _)| *code == row.ret_code) {
                Some((_, class, why)) => {
                    assert_eq!(error.class, *class, "{}: {why}", row.ret_code)
                }
                None if !allowed(row.remedy).contains(&error.class) => {
                    disagreements.push((row.ret_code, row.remedy, error.class))
                }
                None => {}
            }
        }
        assert!(disagreements.is_empty(), "{disagreements:?}");
    }

    #[test]
    fn every_configssl_value_the_client_sends_is_one_the_simulator_takes() {
        for form in [ConfigsslForm::YesNo, ConfigsslForm::OnOff] {
            for on in [true, false] {
                let value = form.value(on);
                let taken = sim::CONFIGSSL_VALUES
                    .iter()
                    .find(|(known, _)| *known == value);
                assert_eq!(taken.map(|(_, means)| *means), Some(on), "{value}");
            }
        }
        // The documented (prose) form is the one sent first.
        assert_eq!(ConfigsslForm::DOCUMENTED.value(true), "YES");
        assert_eq!(mysql_plus::DEFAULT_SSL_ENV_KEY, sim::DEFAULT_SSL_ENV_KEY);
    }

    #[test]
    fn job_statuses_the_simulator_reports_are_known_to_the_client() {
        for status in sim::JOB_STATUSES {
            assert!(
                !matches!(JobStatus::parse(status), JobStatus::Other(_)),
                "{status}"
            );
        }
    }
}
