//! Request body decoding, as the certificate route does it: the body already read
//! within the size limit, then `body::parse` by Content-Type (URL-encoded form,
//! multipart, application/pkcs10 DER or PEM, PEM text, or sniffed when untyped).
//!
//! Input: the Content-Type header value on the first line (empty line: no header),
//! then the body.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, header};
use libfuzzer_sys::fuzz_target;
use onlineca_core::csr;
use onlineca_server::body::{self, RawBody};

/// Drives a future that never waits on I/O (the body is in memory) to completion.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("body::parse did not finish on an in-memory body");
}

fuzz_target!(|data: &[u8]| {
    let (content_type, bytes) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let mut req = Request::builder()
        .method("POST")
        .uri("/onlineca/certificate/");
    if !content_type.is_empty() {
        // What hyper would have refused before the route is not the route's input.
        let Ok(v) = HeaderValue::from_bytes(content_type) else {
            return;
        };
        req = req.header(header::CONTENT_TYPE, v);
    }
    let (parts, ()) = req.body(()).expect("request head").into_parts();
    let raw = RawBody::new(parts, Bytes::copy_from_slice(bytes));
    if let Ok(found) = block_on(body::parse(raw)) {
        // What the route does next with it.
        let _ = csr::check(&found.der);
        let _ = found.username.map(|u| u.len());
    }
});
