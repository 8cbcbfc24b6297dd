//! The plain HTTP listener beside HTTPS (`http_listen`): every request is
//! sent to the same URL over HTTPS with 308, which keeps the method and
//! the body, as Caddy does on port 80. With `[tls.acme]`, it also answers
//! ACME's HTTP-01 validation, which has to be plain HTTP.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, PoisonError, RwLock},
};

use actix_http::{body::BoxBody, header, HttpMessage, HttpService, Request, Response, StatusCode};
use actix_service::{fn_service, ServiceFactory};

use crate::{config::canonical_host, proxy::route::host_of_authority};

/// Where ACME's HTTP-01 validation asks for a token's answer.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The HTTP-01 answers (key authorizations) ACME has pending, by token.
#[derive(Debug, Default)]
pub struct Http01Answers {
    tokens: RwLock<HashMap<String, String>>,
}

impl Http01Answers {
    /// Answers `GET /.well-known/acme-challenge/{token}` with `answer`.
    pub fn insert(&self, token: &str, answer: &str) {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        tokens.insert(token.to_owned(), answer.to_owned());
    }

    /// Stops answering `token`.
    pub fn remove(&self, token: &str) {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        tokens.remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        tokens.get(token).cloned()
    }
}

/// The redirecting HTTP/1.1 service for one worker; with `answers`, it
/// answers HTTP-01 validation too.
pub fn service(
    https_port: u16,
    head_timeout: std::time::Duration,
    answers: Option<Arc<Http01Answers>>,
) -> impl ServiceFactory<
    actix_rt::net::TcpStream,
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
> {
    HttpService::build()
        .client_request_timeout(head_timeout)
        .h1(fn_service(move |req: Request| {
            let res = match (&answers, req.path().strip_prefix(CHALLENGE_PATH)) {
                (Some(answers), Some(token)) => challenge(answers, token),
                _ => answer(&req, https_port),
            };
            std::future::ready(Ok::<_, std::convert::Infallible>(res))
        }))
        .tcp()
}

/// The key authorization for `token`, or 404: a token this server did not
/// ask for has no answer at the HTTPS end either.
fn challenge(answers: &Http01Answers, token: &str) -> Response<BoxBody> {
    let Some(key_authorization) = answers.get(token) else {
        return Response::with_body(
            StatusCode::NOT_FOUND,
            BoxBody::new("404 Not Found: no such ACME challenge.\n"),
        );
    };
    let mut res = Response::with_body(StatusCode::OK, BoxBody::new(key_authorization));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    res
}

/// The 308 to `req`'s URL over HTTPS, or 400 when the request names no
/// usable host.
fn answer(req: &Request, https_port: u16) -> Response<BoxBody> {
    let Some(location) = https_url(req, https_port) else {
        return Response::with_body(
            StatusCode::BAD_REQUEST,
            BoxBody::new("400 Bad Request: the request names no host to send to HTTPS.\n"),
        );
    };
    let body = format!("308 Permanent Redirect: this server answers on {location}\n");
    let mut res = Response::with_body(StatusCode::PERMANENT_REDIRECT, BoxBody::new(body));
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, value);
    }
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// `https://host[:port]/path?query` for `req`; the port only when the
/// HTTPS listener's is not 443.
fn https_url(req: &Request, https_port: u16) -> Option<String> {
    let authority = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(header::HOST)?.to_str().ok()?,
    };
    let host = host_of_authority(authority)?;
    let is_ip = host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
    let host = if is_ip {
        host.to_owned()
    } else {
        canonical_host(host)?.into_owned()
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = if target.starts_with('/') { target } else { "/" };
    Some(match https_port {
        443 => format!("https://{host}{target}"),
        port => format!("https://{host}:{port}{target}"),
    })
}
