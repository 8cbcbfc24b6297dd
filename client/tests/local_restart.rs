//! A local service restarted between requests: the keep-alive connection
//! the client held to it is stale, and the next request, idempotent or
//! not, still reaches the new service.

mod support;

use support::*;

#[actix_rt::test]
async fn requests_after_the_local_service_restarted_reach_the_new_one() {
    let mut t = Tunnel::start().await;
    let port = t.upstream.addr.port();
    for i in 0..3 {
        let res = t.get(&format!("/id/{i}")).send().await.expect("answer");
        assert_eq!(res.status().as_u16(), 200);
    }
    // The pooled connections to the old service are now stale.
    t.upstream.stop().await;
    t.upstream = upstream::Upstream::start_on(port);
    let mut res = t.get("/id/7").send().await.expect("answer");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.body().await.expect("body"), "id-7".as_bytes());
    let mut res = t
        .request(awc::http::Method::POST, "/sum")
        .send_body("12345")
        .await
        .expect("answer");
    assert_eq!(res.status().as_u16(), 200, "{:?}", res.body().await);
}
