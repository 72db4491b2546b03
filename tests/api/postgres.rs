//! PostgreSQL-only behaviour: dimension checks, restarts, the e2e crawl on the production store.
