//! `util`: what every midtrain crate shares. Atomic writes, content checksums, folder locks and
//! config-relative paths ([`fsutil`]), the seeded generator behind every shuffle ([`rng`]), and
//! the page shell and escaping of the HTML reports ([`html`]).

pub mod fsutil;
pub mod html;
pub mod rng;
