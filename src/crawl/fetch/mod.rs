//! Getting a page's bytes. Plain HTTP here; a browser renderer joins later
//! behind the same outcome types.

pub mod http;

pub use http::{FetchError, Fetched, HttpFetcher};
