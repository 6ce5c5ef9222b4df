//! The `opsdoctor` binary: parse the command line and hand over to the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    api::cli::run().await
}
