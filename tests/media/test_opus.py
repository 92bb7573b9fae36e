from media.sinks.opus import opus_packet_samples


def test_opus_packet_samples_from_toc() -> None:
    assert opus_packet_samples(bytes([0xFC, 0])) == 960  # CELT 20 ms, one frame
    assert opus_packet_samples(bytes([0x7C, 0])) == 960  # hybrid 20 ms
    assert opus_packet_samples(bytes([0x11, 0])) == 2 * 1920  # SILK 40 ms x2
    assert opus_packet_samples(bytes([0xEB, 0x03])) == 3 * 240  # CELT 5 ms x3
    assert opus_packet_samples(b"") == 0
