//! The ways in for tools people already run, over the same crawls, sources,
//! pages and search as the HTTP API: `mcp`, an MCP server for agents.
//! Each answers with the API's error codes and sees only the caller's
//! tenant.

pub mod mcp;
