use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    trawl::cli::run(trawl::cli::Cli::parse()).await
}
