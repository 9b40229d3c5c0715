use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TICKVAULT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = tickvault::cli::Cli::parse();
    // Commands plan and run SQL on these threads: stacks as deep as the server's query runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(tickvault::query::limits::QUERY_STACK_BYTES)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(tickvault::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
