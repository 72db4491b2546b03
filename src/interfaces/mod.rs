//! The ways in for tools people already run, over the same crawls, sources,
//! pages and search as the HTTP API: `mcp`, an MCP server for agents;
//! `firecrawl`, Firecrawl's `/v2` API for the tools built on its SDKs.
//! Each sees only the caller's tenant.

pub mod firecrawl;
pub mod mcp;
