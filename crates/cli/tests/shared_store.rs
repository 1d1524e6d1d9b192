//! Several instances on one PostgreSQL database: the deployment for when one server
//! is not enough. Two real servers share users and the issued-certificate record.

mod common;

use common::*;

use common::pg::{drop_schema, pg_schema};

#[test]
fn two_servers_share_one_postgresql_store() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some((url, schema)) = pg_schema(&rt) else {
        return;
    };
    let store_line = format!("url = \"{url}\"");

    let mut a = TestCa::init(&[]);
    a.edit_config("url = \"sqlite://onlineca.db\"", &store_line);
    a.edit_config("poll = \"5s\"", "poll = \"200ms\"");
    a.edit_config("rate_limit = 120", "rate_limit = 0");
    a.start();
    // The second instance: the same CA files and the same database.
    let mut b = TestCa::twin_of(&a);
    b.edit_config("url = \"sqlite://onlineca.db\"", &store_line);
    b.edit_config("poll = \"5s\"", "poll = \"200ms\"");
    b.edit_config("rate_limit = 120", "rate_limit = 0");
    b.start();

    // A user added once exists for both.
    let pw = a.add_user("alice");
    let (_k, csr) = make_csr(a.dir.path(), "s", "ec", Some("P-256"), "/CN=dummy", &[]);
    let mut serials = Vec::new();
    for (i, ca) in [&a, &b, &a, &b].into_iter().enumerate() {
        let r = ca.post_csr("alice", &pw, &csr);
        assert_eq!(r.status, 200, "instance {i}: {}", r.text());
        let p = a.path(&format!("s{i}.pem"));
        std::fs::write(&p, &r.body).unwrap();
        serials.push(cert_serial(&p));
    }
    // 64 requests with the right password at once, half on each instance (HTTP/1.1
    // connections on one, HTTP/2 streams on the other): none is refused.
    let (on_a, on_b) = std::thread::scope(|s| {
        let ha = s.spawn(|| a.post_csr_parallel("alice", &pw, &csr, 32, false));
        let hb = s.spawn(|| b.post_csr_parallel("alice", &pw, &csr, 32, true));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert!(
        on_a.iter().chain(&on_b).all(|&s| s == 200),
        "{on_a:?} {on_b:?}"
    );

    // Every certificate from either instance is in the one record.
    let recorded = rt.block_on(async {
        let store = onlineca_store::open(&url).await.unwrap();
        let mut found = Vec::new();
        for s in &serials {
            found.push(store.get_issued(s).await.unwrap().map(|c| c.username));
        }
        found
    });
    assert_eq!(recorded, vec![Some("alice".to_string()); 4]);

    // Revoked through one instance's configuration: both notice and publish it, and
    // their CRL numbers come from one counter in the store, so never the same twice.
    let na0 = crl_number(&a.fetch_crl("a-crl0.pem"));
    let nb0 = crl_number(&b.fetch_crl("b-crl0.pem"));
    assert_ne!(na0, nb0);
    a.cli_ok(&["cert", "revoke", &serials[0], "--reason", "keyCompromise"]);
    let (a_crl, na1) = a.wait_for_crl_after(na0, "a-crl1.pem");
    let (b_crl, nb1) = b.wait_for_crl_after(nb0, "b-crl1.pem");
    assert_ne!(na1, nb1);
    for crl in [&a_crl, &b_crl] {
        let text = crl_text(crl);
        assert!(text.contains(&serials[0].to_uppercase()), "{text}");
    }
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 4);
    // Removing the user through one instance's configuration refuses it on both.
    ok(onlineca()
        .args(["user", "remove", "alice", "--config"])
        .arg(&b.config));
    assert_eq!(a.post_csr("alice", &pw, &csr).status, 401);
    assert_eq!(b.post_csr("alice", &pw, &csr).status, 401);
    drop(a);
    drop(b);
    drop_schema(&rt, &schema);
}
