//! `wasmlink keygen`: write an ed25519 keypair for signing modules in the repository.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::input::CliError;
use crate::output::print;

/// Write a new ed25519 keypair: the secret key to PATH (mode 0600) and the public key to
/// PATH.pub.
#[derive(clap::Args)]
#[command(after_help = "\
Each file is one line of text: `wasmlink-ed25519-secret <base64 of the 32-byte seed>` and
`wasmlink-ed25519-public <base64 of the 32-byte key>`. Existing files are never overwritten.
Sign with `wasmlink repo add --sign PATH`; trust with `--trust PATH.pub`.

Example:
  wasmlink keygen ~/.config/wasmlink/key

Exit status: 0 success, 2 a file already exists or cannot be written (or stdout cannot be).")]
pub struct Args {
    /// Where to write the secret key (the public key goes to PATH.pub).
    path: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let files = wasmlink::repo::keygen(&args.path).map_err(|e| CliError::Other(e.to_string()))?;
    print(&format!(
        "wrote {} (secret, keep it private) and {} (public); key id {}\n",
        files.secret.display(),
        files.public.display(),
        files.id
    ))?;
    Ok(ExitCode::SUCCESS)
}
