//! The request body, held in a zeroizing buffer.

use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use zeroize::Zeroizing;

/// A request body held in a zeroizing buffer. hyper and rustls copy it into their own write
/// buffers while sending; those are outside our control, ours is wiped when the body is dropped.
pub(super) struct ReqBody {
    pub(super) data: Option<ZBuf>,
}

pub(super) struct ZBuf {
    pub(super) bytes: Zeroizing<Vec<u8>>,
    pub(super) pos: usize,
}

impl Buf for ZBuf {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
    fn chunk(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or(&[])
    }
    fn advance(&mut self, cnt: usize) {
        self.pos = self.pos.saturating_add(cnt).min(self.bytes.len());
    }
}

impl Body for ReqBody {
    type Data = ZBuf;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.remaining() as u64))
    }
}
