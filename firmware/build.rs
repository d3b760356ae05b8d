//! Build script: how the firmware is linked, per ISA and board. It passes the linker
//! script at the workspace's top (`link.ld` for aarch64, `link-x86_64.ld`,
//! `link-riscv64.ld`) to the firmware binary only, so that the library and other
//! binaries built for the same target link as their own authors say. `link.ld` starts the image at `__kernel_base`, which this
//! defines: QEMU `virt` wants the ELF above the DTB it places at 0x4000_0000; a Raspberry
//! Pi's firmware loads `kernel8.img` at 0x8_0000. `link-x86_64.ld` fixes its own address
//! (16 MiB), `link-riscv64.ld` its own (0x8020_0000, above OpenSBI). Every script is
//! watched so that editing one relinks the firmware.
//!
//! On aarch64 and riscv64, the ISAs whose boards boot from a device tree, it also compiles
//! the self-test device trees (`boards/selftest/*.dts`, the broken trees the test
//! `device_tree_errors` feeds the parser) into `OUT_DIR` with `dtc`, which `make deps`
//! installs.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    let var = |k: &str| env::var(k).unwrap_or_default();
    let top = Path::new(&var("CARGO_MANIFEST_DIR")).join("..");
    if var("CARGO_CFG_TARGET_OS") != "none" {
        return;
    }
    let script = match var("CARGO_CFG_TARGET_ARCH").as_str() {
        "aarch64" => "link.ld",
        "x86_64" => "link-x86_64.ld",
        "riscv64" => "link-riscv64.ld",
        _ => return,
    };
    let script = top.join(script);
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    match var("CARGO_CFG_TARGET_ARCH").as_str() {
        "aarch64" => {
            let pi = ["CARGO_FEATURE_RPI3", "CARGO_FEATURE_RPI4"]
                .iter()
                .any(|f| env::var_os(f).is_some());
            let base = if pi { "0x80000" } else { "0x40200000" };
            println!("cargo:rustc-link-arg-bins=--defsym=__kernel_base={base}");
        }
        "riscv64" => {}
        _ => return,
    }
    let out = var("OUT_DIR");
    for name in SELFTEST_TREES {
        let path = top.join(format!("boards/selftest/{name}.dts"));
        let dts = path.display();
        println!("cargo:rerun-if-changed={dts}");
        let dtb = Path::new(&out).join(format!("{name}.dtb"));
        let status = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&path)
            .status()
            .unwrap_or_else(|e| panic!("running dtc for {dts} (`make deps` installs it): {e}"));
        assert!(status.success(), "dtc failed on {dts}");
    }
}

/// The self-test device trees, by file stem.
const SELFTEST_TREES: [&str; 3] = ["overlapping", "no-memory", "overflowing"];
