use wasmparser::{Chunk, Parser, Payload};
fn main() {
    let d = std::fs::read("/tmp/whl/x/componentize_py/componentize_py.abi3.so").unwrap();
    let data = &d[0x7ab6d7..];
    let mut parser = Parser::new(0);
    let mut offset = 0;
    loop {
        match parser.parse(&data[offset..], true) {
            Ok(Chunk::Parsed { consumed, payload }) => {
                offset += consumed;
                println!("{offset} {:?}", payload.as_section());
                if let Payload::CodeSectionStart { ref range, .. } = payload { parser.skip_section(); offset = range.end; }
                if let Payload::End(_) = payload { break }
            }
            Ok(Chunk::NeedMoreData(_)) => break,
            Err(e) => { println!("err {e}"); break }
        }
    }
}
