//! Image sharing, shared by every transport that can carry binary data.
//!
//! A client sends an image's bytes; the CPU work (decode, resize, encode)
//! runs on the [`ImagePool`]'s worker threads, never on the event loop, and
//! the result is published to the room as an ordinary message whose `data` is
//!
//! ```json
//! {"image": {"name": "cat.png", "format": "png", "width": 800, "height": 600,
//!            "bytes": 123456, "thumb": {"_placeholder": true, "num": 0},
//!            "thumb_mime": "image/jpeg", "thumb_width": 256, "thumb_height": 192}}
//! ```
//!
//! with the thumbnail as its one binary attachment. Socket.IO and `/ws`
//! clients receive it like any message with an attachment; TCP clients get a
//! text line (see [`describe`]).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use volna_hub::{ConnId, Data, Hub, HubError, Message};
use volna_media::{ImageError, ImagePool, Thumbnail};

/// The thumbnail maker transports share: the worker pool, or — only to
/// measure why the pool exists — the same work done inline on the event loop.
#[derive(Clone)]
pub struct ImageService {
    pool: Arc<ImagePool>,
    inline: bool,
}

impl ImageService {
    /// Thumbnails on `pool`'s worker threads.
    pub fn new(pool: Arc<ImagePool>) -> ImageService {
        ImageService {
            pool,
            inline: false,
        }
    }

    /// Thumbnails made inline on the calling task, blocking the event loop
    /// while they are made. For the benchmark that shows the difference;
    /// never use it in production. The pool's limits still apply.
    pub fn inline_on_event_loop(pool: Arc<ImagePool>) -> ImageService {
        ImageService { pool, inline: true }
    }

    /// The pool (its limits and counters).
    pub fn pool(&self) -> &Arc<ImagePool> {
        &self.pool
    }

    /// Whether thumbnails are made on the event loop.
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// Decodes `bytes` and makes a thumbnail.
    pub async fn thumbnail(&self, bytes: Bytes) -> Result<Thumbnail, ImageError> {
        if self.inline {
            volna_media::make_thumbnail(&bytes, self.pool.limits())
        } else {
            self.pool.thumbnail(bytes).await
        }
    }
}

/// Longest image name kept, in characters.
pub const MAX_NAME_CHARS: usize = 120;

/// Why an image was not shared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The room does not exist, the sender is not a member of it, or the
    /// hub refused the message.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The thumbnail could not be made: not an accepted image, over the
    /// pool's limits, or the pool is busy or shutting down.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The server runs without an image service.
    #[error("image sharing is disabled on this server")]
    Disabled,
}

impl ShareError {
    /// A short, stable code: the hub's or the image pool's.
    pub fn code(&self) -> &'static str {
        match self {
            ShareError::Hub(e) => e.code(),
            ShareError::Image(e) => e.code(),
            ShareError::Disabled => "disabled",
        }
    }
}

/// Cleans a client-given file name for display: no control characters, no
/// path, at most [`MAX_NAME_CHARS`] characters, `image` when empty.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().to_string();
    if cleaned.is_empty() {
        "image".into()
    } else {
        cleaned
    }
}

/// Makes a thumbnail of `bytes` on the pool and publishes it to `room` as
/// connection `from` (which must be a member; checked before any CPU work).
pub async fn share(
    hub: &Hub,
    images: Option<&ImageService>,
    from: ConnId,
    nsp: &str,
    room: &str,
    name: &str,
    bytes: Bytes,
) -> Result<Arc<Message>, ShareError> {
    let images = images.ok_or(ShareError::Disabled)?;
    if hub.who(nsp, room).is_none() {
        return Err(HubError::NoSuchRoom(room.to_string()).into());
    }
    if !hub.is_member(nsp, room, from) {
        return Err(HubError::NotMember(room.to_string()).into());
    }
    let size = bytes.len();
    let t = images.thumbnail(bytes).await?;
    let image = serde_json::json!({
        "image": {
            "name": clean_name(name),
            "format": t.format_in,
            "width": t.width,
            "height": t.height,
            "bytes": size,
            "thumb": {"_placeholder": true, "num": 0},
            "thumb_mime": t.thumb_mime,
            "thumb_width": t.thumb_width,
            "thumb_height": t.thumb_height,
        }
    });
    let json = RawValue::from_string(image.to_string()).expect("serde_json writes valid JSON");
    let data = Data {
        json,
        attachments: vec![t.thumb],
    };
    Ok(hub.publish_as(from, nsp, room, None, data, true)?)
}

/// The image a message carries, if it is an image message.
#[derive(Debug, serde::Deserialize)]
pub struct ImageInfo {
    /// The cleaned file name (see [`clean_name`]).
    pub name: String,
    /// Format of the upload: `png`, `jpeg`, `gif` or `webp`.
    pub format: String,
    /// Width of the original image in pixels, as displayed.
    pub width: u32,
    /// Height of the original image in pixels, as displayed.
    pub height: u32,
    /// Size of the upload in bytes.
    pub bytes: u64,
}

#[derive(serde::Deserialize)]
struct ImageData {
    image: ImageInfo,
}

/// Parses the `image` object of an image message's data.
pub fn image_info(data: &Data) -> Option<ImageInfo> {
    let raw = data.json.get();
    if !raw.starts_with("{\"image\"") {
        return None;
    }
    serde_json::from_str::<ImageData>(raw).ok().map(|d| d.image)
}

/// A one-line text description of an image message, for text-only clients:
/// `[image cat.png 800x600 png, 123456 bytes]`.
pub fn describe(info: &ImageInfo) -> String {
    format!(
        "[image {} {}x{} {}, {} bytes]",
        info.name, info.width, info.height, info.format, info.bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("../../etc/cat.png"), "cat.png");
        assert_eq!(clean_name("C:\\x\\dog.jpg"), "dog.jpg");
        assert_eq!(clean_name("a\nb"), "ab");
        assert_eq!(clean_name("   "), "image");
        assert_eq!(clean_name(&"x".repeat(500)).len(), MAX_NAME_CHARS);
    }
}
