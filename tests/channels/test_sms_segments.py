"""SMS segment counting (providers.md 4 and the 6.6 table)."""
import pytest

from gateway.channels.sms_segments import SegmentInfo, count_segments

# Every row of providers.md 6.6, as (input, encoding, units, segments).
TABLE = [
    ("Hello", "GSM-7", 5, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),
    ("€" * 81, "GSM-7", 162, 2),
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # the ESC pair cannot straddle a boundary
    ("é" * 70, "GSM-7", 70, 1),
    ("ç", "UCS-2", 1, 1),
    ("x" * 70 + "ç", "UCS-2", 71, 2),
    ("😀" * 35, "UCS-2", 70, 1),
    ("😀" * 36, "UCS-2", 72, 2),
]


@pytest.mark.parametrize("text,encoding,units,segments", TABLE,
                         ids=[f"{len(t)}x{t[:1]!r}" for t, *_ in TABLE])
def test_segment_table(text, encoding, units, segments):
    assert count_segments(text) == SegmentInfo(encoding, units, segments)


def test_surrogate_pair_is_not_split_across_ucs2_segments():
    # 66 units + one emoji (2 units) would straddle the 67-unit boundary, so the emoji opens
    # segment 2: 134 units fit ceil(134 / 67) = 2 segments on paper but need 3.
    assert count_segments("ç" * 66 + "😀" + "x" * 65) == SegmentInfo("UCS-2", 133, 2)
    assert count_segments("ç" * 66 + "😀" + "x" * 66) == SegmentInfo("UCS-2", 134, 3)


def test_extension_characters_and_curly_quotes():
    assert count_segments("{[~]}|^\\\f").units == 18
    assert count_segments("It’s").encoding == "UCS-2"
    assert count_segments("").segments == 1


async def test_sandbox_sms_reports_the_segments_a_provider_would_bill():
    from gateway.channels.sandbox import SandboxSender
    from gateway.domain.types import Channel, OutgoingMessage

    sms = await SandboxSender(Channel.SMS).send(OutgoingMessage(1, Channel.SMS, "+14155550100", "a" * 161))
    chat = await SandboxSender(Channel.WEBCHAT).send(OutgoingMessage(2, Channel.WEBCHAT, "v1", "a" * 161))
    assert (sms.segments, chat.segments) == (2, None)
