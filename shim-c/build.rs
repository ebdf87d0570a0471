//! Builds the C side of shim-c: the shim (supergo.c) and the hello-c server (hello.c,
//! hello_http.c), as one static library linked into the `shim_c` crate.

fn main() {
    const SOURCES: [&str; 3] = ["supergo.c", "hello.c", "hello_http.c"];
    const HEADERS: [&str; 2] = ["supergo.h", "hello.h"];

    let mut build = cc::Build::new();
    build
        .files(SOURCES)
        .include(".")
        // The shim promises C99 on libc alone, clean under strict warnings: hold it to that.
        .flag("-std=c99")
        .flag("-Wall")
        .flag("-Wextra")
        .flag("-Werror")
        // hello-c runs a thread per connection.
        .flag("-pthread");
    build.compile("supergo_shim");

    for file in SOURCES.iter().chain(HEADERS.iter()) {
        println!("cargo:rerun-if-changed={file}");
    }
}
