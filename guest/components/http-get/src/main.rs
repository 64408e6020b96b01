//! `http-get URL`: one GET through `wasi:http/outgoing-handler`. Prints `status N` and the body,
//! or `error: CODE` (the `wasi:http` error code, e.g. `HttpRequestDenied`) and exits 3
//! (std on WASI 0.2 reports any nonzero status as `wasi:cli/exit` err: the host sees 1). The URL
//! is the first argument, else the variable `URL` (for `wasmlink call ... wasi:cli/run#run`).

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, IncomingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

fn main() {
    let Some(url) = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("URL").ok())
    else {
        eprintln!("usage: http-get URL (or URL=... in the environment)");
        std::process::exit(2);
    };
    match get(&url) {
        Ok((status, body)) => {
            println!("status {status}");
            print!("{}", String::from_utf8_lossy(&body));
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(3);
        }
    }
}

/// `http://HOST[:PORT]/PATH` (or https) as (scheme, authority, path with query).
fn split(url: &str) -> Result<(Scheme, &str, &str), String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return Err(format!("{url}: not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((scheme, authority, path))
}

fn get(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, authority, path) = split(url)?;
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme".to_string())?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("bad authority {authority}"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("bad path {path}"))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response after the pollable was ready")?
        .map_err(|()| "the response was already taken")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| "no body stream")?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!("reading the body: {}", e.to_debug_string()));
                }
            }
        }
    }
    let _trailers = IncomingBody::finish(body);
    Ok((status, bytes))
}
