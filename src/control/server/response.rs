//! Answer bodies: JSON in one piece with the headers every answer carries, error answers with
//! their code kept for the log, and streamed downloads that abort rather than end short.

use crate::control::browser;
use crate::control::errors::ApiError;
use crate::control::handlers::{self, Chunk};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// Every answer's body: JSON in one piece, or a streamed download.
pub(super) type Body = BoxBody<Bytes, DownloadAborted>;

/// A streamed download that failed after its answer began: hyper then ends the connection
/// without the chunked body's last chunk, so the client sees an incomplete answer, never a
/// shorter complete one.
#[derive(Debug, thiserror::Error)]
#[error("the download was aborted: {0}")]
pub(super) struct DownloadAborted(String);

/// A streamed download's body: chunks from a channel until [`Chunk::End`]. A producer that
/// aborts, or stops (its sender dropped) before `End`, aborts the body.
struct ChannelBody {
    chunks: tokio::sync::mpsc::Receiver<Chunk>,
    ended: bool,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = DownloadAborted;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        let next = match self.chunks.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(c) => c,
        };
        Poll::Ready(match next {
            Some(Chunk::Data(b)) => Some(Ok(hyper::body::Frame::data(b))),
            Some(Chunk::End) => {
                self.ended = true;
                None
            }
            Some(Chunk::Abort(why)) => {
                self.ended = true;
                Some(Err(DownloadAborted(why)))
            }
            None => {
                self.ended = true;
                Some(Err(DownloadAborted(
                    "the producer stopped before the end".into(),
                )))
            }
        })
    }
}

pub(super) fn download_response(d: handlers::Download) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed(ChannelBody {
        chunks: d.chunks,
        ended: false,
    }));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(d.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", d.filename)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

pub(super) fn json_response(
    status: StatusCode,
    body: &serde_json::Value,
    close: bool,
) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(
        Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    browser::secure_headers(h);
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// An error answer's code, kept on the response for the request log.
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrorCode(pub(super) &'static str);

pub(super) fn error_response(e: &ApiError, close: bool) -> Response<Body> {
    let mut resp = json_response(e.status, &e.body(), close);
    resp.extensions_mut().insert(ErrorCode(e.code));
    resp
}

/// A console answer: one of its compiled-in files, a redirect, or an error (the console's own
/// headers are added by the caller, to errors too).
pub(super) fn console_response(a: crate::control::ui::Answer) -> Response<Body> {
    use crate::control::ui::Answer;
    match a {
        Answer::File(asset) => {
            let mut resp = Response::new(
                Full::new(Bytes::from_static(asset.body))
                    .map_err(|never| match never {})
                    .boxed(),
            );
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            resp
        }
        Answer::Redirect(to) => {
            let mut resp = json_response(
                StatusCode::PERMANENT_REDIRECT,
                &serde_json::json!({}),
                false,
            );
            resp.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static(to));
            resp
        }
        Answer::Refused(status, code, message) => {
            error_response(&ApiError::new(status, code, message), false)
        }
    }
}
