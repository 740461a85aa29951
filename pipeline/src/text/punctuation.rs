//! datatrove's punctuation constants (`datatrove/utils/text.py`, 0.10.1).

/// `PUNCTUATION`, printable part, in source order.
const PUNCTUATION_PRINTABLE: &str = "!/\u{2014}\u{201D}:\u{FF05}\u{FF11}\u{3008}&(\u{3001}\u{2501}\\\u{3010}#%\u{300C}\u{300D}\u{FF0C}\u{3011}\u{FF1B}+^]~\u{201C}\u{300A}\u{201E}';\u{2019}{|\u{2236}\u{B4}[=-`*\u{FF0E}\u{FF08}\u{2013}\u{FF1F}\u{FF01}\u{FF1A}$\u{FF5E}\u{AB}\u{3009},><\u{300B})?\u{FF09}\u{3002}\u{2026}@_.\"}\u{25BA}\u{BB}";

/// `TERMINAL_PUNCTUATION`: sentence-ending marks of many scripts (159 characters).
const TERMINAL_PUNCTUATION: &str = "!.?\u{589}\u{61D}\u{61E}\u{61F}\u{6D4}\u{700}\u{701}\u{702}\u{7F9}\u{837}\u{839}\u{83D}\u{83E}\u{964}\u{965}\u{104A}\u{104B}\u{1362}\u{1367}\u{1368}\u{166E}\u{1735}\u{1736}\u{17D4}\u{17D5}\u{17D6}\u{17D9}\u{17DA}\u{1803}\u{1809}\u{1944}\u{1945}\u{1AA8}\u{1AA9}\u{1AAA}\u{1AAB}\u{1B5A}\u{1B5B}\u{1B5E}\u{1B5F}\u{1B7D}\u{1B7E}\u{1C3B}\u{1C3C}\u{1C7E}\u{1C7F}\u{203C}\u{203D}\u{2047}\u{2048}\u{2049}\u{2E2E}\u{2E3C}\u{2E53}\u{2E54}\u{3002}\u{A4FF}\u{A60E}\u{A60F}\u{A6F3}\u{A6F7}\u{A876}\u{A877}\u{A8CE}\u{A8CF}\u{A92F}\u{A9C8}\u{A9C9}\u{AA5D}\u{AA5E}\u{AA5F}\u{AAF0}\u{AAF1}\u{ABEB}\u{FE52}\u{FE56}\u{FE57}\u{FF01}\u{FF0E}\u{FF1F}\u{FF61}\u{10A56}\u{10A57}\u{10F55}\u{10F56}\u{10F57}\u{10F58}\u{10F59}\u{10F86}\u{10F87}\u{10F88}\u{10F89}\u{11047}\u{11048}\u{110BE}\u{110BF}\u{110C0}\u{110C1}\u{11141}\u{11142}\u{11143}\u{111C5}\u{111C6}\u{111CD}\u{111DE}\u{111DF}\u{11238}\u{11239}\u{1123B}\u{1123C}\u{112A9}\u{1144B}\u{1144C}\u{115C2}\u{115C3}\u{115C9}\u{115CA}\u{115CB}\u{115CC}\u{115CD}\u{115CE}\u{115CF}\u{115D0}\u{115D1}\u{115D2}\u{115D3}\u{115D4}\u{115D5}\u{115D6}\u{115D7}\u{11641}\u{11642}\u{1173C}\u{1173D}\u{1173E}\u{11944}\u{11946}\u{11A42}\u{11A43}\u{11A9B}\u{11A9C}\u{11C41}\u{11C42}\u{11EF7}\u{11EF8}\u{11F43}\u{11F44}\u{16A6E}\u{16A6F}\u{16AF5}\u{16B37}\u{16B38}\u{16B44}\u{16E98}\u{1BC9F}\u{1DA88}";

/// A character of datatrove's `TERMINAL_PUNCTUATION` (FineWeb's line-punctuation rule).
pub fn is_terminal_punctuation(c: char) -> bool {
    matches!(c, '.' | '!' | '?') || (!c.is_ascii() && TERMINAL_PUNCTUATION.contains(c))
}

/// The ASCII characters of `PUNCTUATION_PRINTABLE`, as a table: the string search was most of
/// the time normalisation took on mostly-ASCII text.
const ASCII_PUNCTUATION: [bool; 128] = {
    let (mut table, bytes) = ([false; 128], PUNCTUATION_PRINTABLE.as_bytes());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] < 128 {
            table[bytes[i] as usize] = true;
        }
        i += 1;
    }
    table
};

/// A character of datatrove's `PUNCTUATION` string alone (what `simplify_text` turns into spaces).
pub fn is_punctuation_string(c: char) -> bool {
    let code = c as u32;
    if code <= 8 || (11..=31).contains(&code) || (127..=159).contains(&code) {
        return true;
    }
    if c.is_ascii() {
        return !c.is_ascii_alphanumeric() && c != ' ' && ASCII_PUNCTUATION[code as usize];
    }
    PUNCTUATION_PRINTABLE.contains(c)
}

/// A character of `PUNCTUATION_SET` = `PUNCTUATION` ∪ `TERMINAL_PUNCTUATION` (Gopher's "symbol").
pub fn is_punctuation(c: char) -> bool {
    let code = c as u32;
    if code <= 8 || (11..=31).contains(&code) || (127..=159).contains(&code) {
        return true;
    }
    if c.is_ascii_alphanumeric() || c == ' ' {
        return false;
    }
    PUNCTUATION_PRINTABLE.contains(c) || is_terminal_punctuation(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_table_agrees_with_the_string() {
        for c in (0..128u8).map(char::from) {
            let by_string = !c.is_ascii_alphanumeric() && c != ' ' && PUNCTUATION_PRINTABLE.contains(c);
            let code = c as u32;
            let control = code <= 8 || (11..=31).contains(&code) || code == 127;
            assert_eq!(is_punctuation_string(c), control || by_string, "{c:?}");
        }
    }

    #[test]
    fn set_sizes_match_datatrove() {
        let all: std::collections::BTreeSet<char> =
            (0..=0x10FFFFu32).filter_map(char::from_u32).filter(|&c| is_punctuation(c)).collect();
        assert_eq!(all.len(), 281);
        let terminal = (0..=0x10FFFFu32).filter_map(char::from_u32).filter(|&c| is_terminal_punctuation(c)).count();
        assert_eq!(terminal, 159);
        assert!(is_punctuation('\r') && !is_punctuation('\t') && !is_punctuation('\n'));
        assert!(is_punctuation('１') && is_punctuation('\\') && is_punctuation('►'));
        assert!(!is_punctuation('a') && !is_punctuation('😀'));
    }
}
