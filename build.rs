//! Build script: where the firmware is linked, per board. `link.ld` (aarch64) starts the
//! image at `__kernel_base`, which this defines: QEMU `virt` wants the ELF above the DTB
//! it places at 0x4000_0000; a Raspberry Pi's firmware loads `kernel8.img` at 0x8_0000.
//! `link-x86_64.ld` fixes its own address (16 MiB) and needs nothing from here; both
//! scripts are watched so that editing one relinks the firmware.
//!
//! On aarch64 it also compiles the self-test device trees (`boards/selftest/*.dts`, the
//! broken trees the test `device_tree_errors` feeds the parser) into `OUT_DIR` with
//! `dtc`, which `make deps` installs.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=link-x86_64.ld");
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "none" || var("CARGO_CFG_TARGET_ARCH") != "aarch64" {
        return;
    }
    let pi = ["CARGO_FEATURE_RPI3", "CARGO_FEATURE_RPI4"]
        .iter()
        .any(|f| env::var_os(f).is_some());
    let base = if pi { "0x80000" } else { "0x40200000" };
    println!("cargo:rustc-link-arg-bins=--defsym=__kernel_base={base}");
    let out = var("OUT_DIR");
    for name in SELFTEST_TREES {
        let dts = format!("boards/selftest/{name}.dts");
        println!("cargo:rerun-if-changed={dts}");
        let dtb = Path::new(&out).join(format!("{name}.dtb"));
        let status = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&dts)
            .status()
            .unwrap_or_else(|e| panic!("running dtc for {dts} (`make deps` installs it): {e}"));
        assert!(status.success(), "dtc failed on {dts}");
    }
}

/// The self-test device trees, by file stem.
const SELFTEST_TREES: [&str; 3] = ["overlapping", "no-memory", "overflowing"];
