//! Keyset pagination shared by both stores: ids are time-ordered UUIDv7, so a page is "rows
//! after this id, in id order", fetched with `LIMIT limit + 1` to learn whether more follow.

use tollgate_types::tenancy::{Page, PageRequest};
use uuid::Uuid;

/// The page size actually used: 1..=MAX_LIMIT.
pub(crate) fn page_limit(page: &PageRequest) -> usize {
    page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize
}

/// Turns `limit + 1` fetched rows into a page: the extra row only says there is a next page.
pub(crate) fn finish_page<T>(mut rows: Vec<T>, limit: usize, id: impl Fn(&T) -> Uuid) -> Page<T> {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(id)
    } else {
        None
    };
    Page { data: rows, next }
}
