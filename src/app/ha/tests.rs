//! The cluster glue against a real PostgreSQL (`tests/support/postgres.rs`): HTTP-01 answers
//! published by one instance are served by another.

use super::*;
use crate::secret::Secret;
use crate::source::acme::{Http01Responder, SharedTokens};
use crate::store::postgres::ConnectOptions;

use crate::store::postgres::tests::server;

async fn get(responder: &Http01Responder, token: &str) -> (u16, String) {
    let url = format!(
        "http://{}/.well-known/acme-challenge/{token}",
        responder.local_addr()
    );
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn any_instance_answers_an_http01_challenge_another_published() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pg = server::PgServer::start(port);
    let url = pg.create_database("tokens");
    let store = Arc::new(
        PostgresStore::open(&ConnectOptions {
            url: Secret::new(url),
            ca_file: None,
        })
        .unwrap(),
    );
    let leader = Http01Responder::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let follower = Http01Responder::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    for responder in [&leader, &follower] {
        responder.share_with(Arc::new(StoreTokens(store.clone())));
    }
    assert_eq!(get(&follower, "tok").await.0, 404);
    StoreTokens(store.clone()).publish("tok", "tok.thumbprint");
    assert_eq!(get(&follower, "tok").await, (200, "tok.thumbprint".into()));
    assert_eq!(get(&leader, "tok").await, (200, "tok.thumbprint".into()));
    StoreTokens(store.clone()).withdraw("tok");
    assert_eq!(get(&follower, "tok").await.0, 404);
}
