//! Test guest: a plain WASI program, a valid component without Weir's exports.

fn main() {
    println!("I am not an operator");
}
