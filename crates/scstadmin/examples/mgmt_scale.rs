//! Scale benchmark of the management socket (run by scripts/mgmt-scale): against a
//! running scstd with an empty target, create N nullio devices and N LUNs and report
//! the cost per device+LUN, then remove them again.
//!
//! usage: mgmt_scale SOCKET TARGET N [N...]

#![forbid(unsafe_code)]

use std::time::Instant;

use scst_mgmt::Client;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, target, sizes @ ..] = args.as_slice() else {
        anyhow::bail!("usage: mgmt_scale SOCKET TARGET N [N...]");
    };
    let mut c = Client::connect(socket)?;
    let luns = format!("targets/iscsi/{target}/luns/mgmt");
    let mut results = Vec::new();
    for n in sizes {
        let n: usize = n.parse()?;
        let start = Instant::now();
        for i in 0..n {
            c.write(
                "handlers/vdisk_nullio/mgmt",
                &format!("add_device scale{i} size_mb=1"),
            )?;
            c.write(&luns, &format!("add scale{i} {i}"))?;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        // The reads -write_config does, over the whole tree, for scale.
        let start = Instant::now();
        let devs = c.list("devices")?.len();
        for i in 0..n {
            c.read(&format!("targets/iscsi/{target}/luns/{i}/device"))?;
        }
        let read_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "N={n:<6} create device+LUN: {us:9.1} us/object   read LUN: {read_us:7.1} us/object   ({devs} devices)"
        );
        results.push(us);
        c.write(&luns, "clear")?;
        for i in 0..n {
            c.write(
                "handlers/vdisk_nullio/mgmt",
                &format!("del_device scale{i}"),
            )?;
        }
    }
    if let [first, .., last] = results.as_slice() {
        println!(
            "ratio (per-object cost at N={} / N={}): {:.2}",
            sizes.last().unwrap(),
            sizes[0],
            last / first
        );
    }
    Ok(())
}
