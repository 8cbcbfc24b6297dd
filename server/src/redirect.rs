//! The plain HTTP listener beside HTTPS (`http_listen`): every request is
//! sent to the same URL over HTTPS with 308, which keeps the method and
//! the body, as Caddy does on port 80.

use std::net::IpAddr;

use actix_http::{body::BoxBody, header, HttpMessage, HttpService, Request, Response, StatusCode};
use actix_service::{fn_service, ServiceFactory};

use crate::{config::canonical_host, proxy::route::host_of_authority};

/// The redirecting HTTP/1.1 service for one worker.
pub fn service(
    https_port: u16,
    head_timeout: std::time::Duration,
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
            std::future::ready(Ok::<_, std::convert::Infallible>(answer(&req, https_port)))
        }))
        .tcp()
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
