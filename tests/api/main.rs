//! The integration tests: the service on port 0, a fresh database per test,
//! and the fixture site over real HTTP on loopback.

mod browser;
mod cancellation;
mod cluster;
mod content;
mod crawl_types;
mod dashboard;
mod embedding;
mod firecrawl;
mod guard;
mod hardening;
mod helpers;
mod lifecycle;
mod login;
mod mcp;
mod misbehaving;
mod netns;
mod openapi;
mod pdf;
mod pg;
mod pipeline;
mod politeness;
mod postgres;
mod progress;
mod readme;
mod realtime;
mod refresh;
mod scope;
mod search;
mod sources;
mod store_contract;
mod validation;
mod webhooks;
