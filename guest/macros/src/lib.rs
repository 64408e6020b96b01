//! `#[export]` for wasmlink guests. Use it as `#[wasmlink_guest::export]`: the generated code
//! refers to the `wasmlink_guest` crate, which re-exports this attribute.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::{FnArg, ItemFn, LitStr, Type, parse_macro_input};

/// How the generated wrapper passes data (see `docs/abi.md`).
#[derive(Clone, Copy, PartialEq)]
enum Convention {
    /// ABI v1: `f(ptr, len) -> &result_record`.
    Abi,
    /// `f(ptr, len) -> &(ptr, len)`.
    Seed,
    /// `f(ptr) -> ptr`, NUL-terminated strings.
    CString,
    /// `f(ptr, len) -> (ptr << 32) | len`.
    PtrLen,
}

/// The parameter, as the wrapper must produce it.
enum Param {
    None,
    /// Anything implementing `FromInput` (`&str`, `&[u8]`, `String`, `Vec<u8>`).
    Bytes(Box<Type>),
    /// `RecordBatch` (by value or by reference).
    Batch {
        by_ref: bool,
    },
    /// `&mut InPlaceBatch`.
    InPlace,
}

fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Group(g) => last_ident(&g.elem),
        Type::Paren(p) => last_ident(&p.elem),
        _ => None,
    }
}

fn classify(ty: &Type) -> Param {
    if last_ident(ty).as_deref() == Some("RecordBatch") {
        return Param::Batch { by_ref: false };
    }
    if let Type::Reference(r) = ty {
        match last_ident(&r.elem).as_deref() {
            Some("RecordBatch") if r.mutability.is_none() => return Param::Batch { by_ref: true },
            Some("InPlaceBatch") if r.mutability.is_some() => return Param::InPlace,
            _ => {}
        }
    }
    Param::Bytes(Box::new(ty.clone()))
}

/// Exports a function through the wasmlink ABI (export name = the function's name).
///
/// - `#[export]`: ABI v1. The parameter is `&str`, `&[u8]`, `String`, `Vec<u8>` or
///   `RecordBatch` (or none); the result `String`, `Vec<u8>`, `&'static str`, `()`,
///   `RecordBatch`, or `Result<T, E: Display>` of those.
/// - `#[export(in_place)]`: a `fn(&mut InPlaceBatch)` returning `()` or `Result<(), E>`.
/// - `#[export(convention = "seed" | "cstring" | "ptrlen")]`: an older plugin convention, for
///   byte/string functions; needs `wasmlink_guest::export_seed_allocator!()` in the module.
/// - `#[export(name = "other")]`: a different export name.
#[proc_macro_attribute]
pub fn export(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let mut convention = Convention::Abi;
    let mut in_place = false;
    let mut export_name: Option<LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("in_place") {
            in_place = true;
            Ok(())
        } else if meta.path.is_ident("name") {
            export_name = Some(meta.value()?.parse()?);
            Ok(())
        } else if meta.path.is_ident("convention") {
            let value: LitStr = meta.value()?.parse()?;
            convention = match value.value().as_str() {
                "abi" | "v1" => Convention::Abi,
                "seed" => Convention::Seed,
                "cstring" => Convention::CString,
                "ptrlen" => Convention::PtrLen,
                other => {
                    return Err(syn::Error::new(
                        value.span(),
                        format!(
                            "unknown convention `{other}`: expected \"seed\", \"cstring\" or \"ptrlen\""
                        ),
                    ));
                }
            };
            Ok(())
        } else {
            Err(meta.error(
                "unknown option: expected `in_place`, `name = \"...\"` or `convention = \"...\"`",
            ))
        }
    });
    parse_macro_input!(attr with parser);
    match expand(&func, convention, in_place, export_name) {
        Ok(tokens) => tokens.into(),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#func #e).into()
        }
    }
}

fn expand(
    func: &ItemFn,
    convention: Convention,
    in_place: bool,
    export_name: Option<LitStr>,
) -> syn::Result<proc_macro2::TokenStream> {
    let sig = &func.sig;
    let name = &sig.ident;
    let err = |msg: &str| Err(syn::Error::new_spanned(sig, msg));
    if sig.asyncness.is_some() || !sig.generics.params.is_empty() || sig.variadic.is_some() {
        return err("#[export] functions cannot be async, generic or variadic");
    }
    let param = match sig.inputs.len() {
        0 => Param::None,
        1 => match &sig.inputs[0] {
            FnArg::Typed(t) => classify(&t.ty),
            FnArg::Receiver(_) => return err("#[export] needs a free function, not a method"),
        },
        _ => return err("#[export] functions take one parameter (the input)"),
    };
    let export_name =
        export_name.unwrap_or_else(|| LitStr::new(&name.to_string(), Span::call_site()));
    let wrapper = format_ident!("__wasmlink_export_{}", name);
    let sdk = quote!(::wasmlink_guest::__private);

    let in_place_param = matches!(param, Param::InPlace);
    if in_place != in_place_param {
        return err(
            "#[export(in_place)] goes with exactly one parameter of type `&mut InPlaceBatch`",
        );
    }
    let batch = matches!(param, Param::Batch { .. } | Param::InPlace);
    if batch && convention != Convention::Abi {
        return err("Arrow functions exist only in the ABI v1 convention");
    }

    // A closure from the input bytes to Result<Output, String>, for the byte conventions.
    let bytes_closure = match &param {
        Param::None => quote! {
            |_: &[u8]| #sdk::IntoOutput::into_output(#name())
        },
        Param::Bytes(ty) => quote! {
            |__bytes: &[u8]| {
                let __input = <#ty as #sdk::FromInput>::from_input(__bytes)?;
                #sdk::IntoOutput::into_output(#name(__input))
            }
        },
        _ => quote!(),
    };
    let name_str = name.to_string();
    // The export's record in the module's `wasmlink.exports` custom section (docs/abi.md,
    // "The exports manifest"): `CONVENTION\tINPUT\tNAME\n`, so `wasmlink inspect`/`nm`/`call`
    // can say what each function takes. wasm-ld concatenates the records of all objects.
    let input_kind = match &param {
        Param::None => "none",
        Param::Bytes(ty) => {
            let inner = match &**ty {
                Type::Reference(r) => last_ident(&r.elem),
                other => last_ident(other),
            };
            match inner.as_deref() {
                Some("str" | "String") => "string",
                _ => "bytes",
            }
        }
        Param::Batch { .. } => "arrow",
        Param::InPlace => "arrow-in-place",
    };
    let convention_name = match convention {
        Convention::Abi => "abi",
        Convention::Seed => "seed",
        Convention::CString => "cstring",
        Convention::PtrLen => "ptrlen",
    };
    if export_name.value().contains(['\t', '\n']) {
        return Err(syn::Error::new_spanned(
            &export_name,
            "an export name cannot contain a tab or a newline",
        ));
    }
    let record = format!("{convention_name}\t{input_kind}\t{}\n", export_name.value());
    let record_len = record.len();
    let record = syn::LitByteStr::new(record.as_bytes(), Span::call_site());
    let ptr_len = quote!(__ptr: i32, __len: i32);
    let (params, ret, call) = match (&param, convention) {
        (Param::Batch { by_ref }, _) => {
            let arg = if *by_ref { quote!(&__b) } else { quote!(__b) };
            let call = quote! {
                #sdk::call_arrow(__ptr, __len, |__b| #sdk::BatchOutput::into_batch(#name(#arg)))
            };
            (ptr_len, quote!(i32), call)
        }
        (Param::InPlace, _) => {
            let call = quote! {
                #sdk::call_in_place(__ptr, __len, |__b| {
                    #sdk::InPlaceOutput::into_in_place(#name(__b))
                })
            };
            (ptr_len, quote!(i32), call)
        }
        (_, Convention::Abi) => (
            ptr_len,
            quote!(i32),
            quote!(#sdk::call_bytes(__ptr, __len, #bytes_closure)),
        ),
        (_, Convention::Seed) => {
            let call = quote!(#sdk::call_seed(#name_str, __ptr, __len, #bytes_closure));
            (ptr_len, quote!(i32), call)
        }
        (_, Convention::CString) => {
            let call = quote!(#sdk::call_cstring(#name_str, __ptr, #bytes_closure));
            (quote!(__ptr: i32), quote!(i32), call)
        }
        (_, Convention::PtrLen) => {
            let call = quote!(#sdk::call_ptrlen(#name_str, __ptr, __len, #bytes_closure));
            (ptr_len, quote!(i64), call)
        }
    };
    Ok(quote! {
        #func

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[doc(hidden)]
            #[unsafe(export_name = #export_name)]
            extern "C" fn #wrapper(#params) -> #ret {
                #call
            }

            #[doc(hidden)]
            #[used]
            #[unsafe(link_section = "wasmlink.exports")]
            static __WASMLINK_EXPORT_RECORD: [u8; #record_len] = *#record;
        };
    })
}
