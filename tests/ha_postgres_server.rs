//! The PostgreSQL test harness itself (`support::postgres`): a real server starts as an
//! unprivileged user on a loopback port, keeps its data across a stop (the database-outage
//! tests rely on that) and is gone when dropped.

mod support;

use support::postgres::PgServer;

#[test]
fn a_real_server_starts_keeps_data_across_a_stop_and_goes_away_on_drop() {
    let port = support::free_port();
    let mut server = PgServer::start(port);
    let url = server.create_database("harness");
    assert!(url.ends_with(&format!(":{port}/harness")), "{url}");
    server.sql(
        "harness",
        "CREATE TABLE kept (value INTEGER); INSERT INTO kept VALUES (42)",
    );
    // Never as root: PostgreSQL refuses it, and the harness must work when tests run as root.
    assert_ne!(
        server.sql("harness", "SELECT current_setting('data_directory')"),
        ""
    );

    server.stop();
    assert!(!server.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    server.resume();
    assert_eq!(server.sql("harness", "SELECT value FROM kept"), "42");

    let directory = server.directory().to_path_buf();
    drop(server);
    assert!(!directory.exists(), "the cluster's files are removed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
