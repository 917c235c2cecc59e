//! The shape of every enum whose discriminant indexes a counter array
//! (`WriteStats::calls`, `WriteStats::outcomes`, `RingOpStats::sqes_by_class`,
//! the `PROBE_ERRORS` map): `#[repr(u32)]`, its variant count, every variant
//! in index order, and the name each goes by in reports and attributes.

/// Declares such an enum with `COUNT`, `ALL` and `name()`. Each variant is
/// written `Variant = index => "name"`; the indexes must run 0, 1, 2...,
/// which a compile-time check holds to.
macro_rules! indexed_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $index:literal => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$variant_meta])* $variant = $index,)+
        }

        impl $name {
            pub const COUNT: usize = [$($name::$variant),+].len();
            pub const ALL: [$name; Self::COUNT] = [$($name::$variant),+];

            /// The name used in reports and metric attributes.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        // `ALL[i]` is the variant with index `i`, so `ALL` can index the
        // counter arrays and the arrays can be read back by `ALL`.
        const _: () = {
            let mut i = 0;
            while i < $name::COUNT {
                assert!($name::ALL[i] as usize == i, concat!(stringify!($name), "'s indexes must run 0, 1, 2..."));
                i += 1;
            }
        };
    };
}
