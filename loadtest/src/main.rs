//! `loadtest`: see `loadtest --help` and loadtest/README.md.

use clap::Parser;
use loadtest::cli::{Cli, Command, RunArgs};
use loadtest::{compare, runner, soak, sys};

fn run(args: &RunArgs, idle: bool) -> Result<i32, String> {
    if let Some(core) = args.cpu {
        sys::pin_to_cpu(core)?;
    }
    let plan = args.plan(idle, !args.output.quiet)?;
    let report = runner::execute(&plan)?;
    if args.output.json {
        println!("{}", report.to_json_line());
    } else {
        print!("{}", report.to_table());
    }
    Ok(report.exit_code())
}

fn main() {
    let cli = Cli::parse();
    sys::install_interrupt_handler();
    let result = match &cli.command {
        None => run(&cli.run, false),
        Some(Command::Idle(args)) => run(args, true),
        Some(Command::Compare(args)) => compare::run(args),
        Some(Command::Soak(args)) => soak::run(args),
        Some(Command::MintToken(args)) => args.mint().map(|t| {
            println!("{t}");
            0
        }),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(2);
        }
    }
}
