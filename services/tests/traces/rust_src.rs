// Produces tests/traces/rust*.txt as src/main.rs of a cargo package named `inventory` (see README.md).
mod stock {
    pub fn reserve(counts: &[u32], index: usize) -> u32 {
        let available = counts[index];
        available - 1
    }
}

fn main() {
    let counts = vec![4, 0, 7];
    let idx: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let left = stock::reserve(&counts, idx);
    println!("left: {left}");
}
