#!/usr/bin/env bash
# Makes the audio-format fixtures in test/fixtures/formats/ that test/read.test.ts decodes.
#
# Every file is a conversion of one committed clip, test/fixtures/audio/03-01-05-02-01-01-21.flac (RAVDESS, 16 kHz mono
# 16-bit), cut to 0.5 s (1.0 s .. 1.5 s, where he speaks) unless a name says otherwise, plus a few files broken
# on purpose. Needs sox, lame and opusenc (no ffmpeg). Deterministic: dither is off (-D) and the "random" bytes
# come from sha256, so rerunning gives the same files (given the same versions of sox, lame and opus-tools).
#
# Usage: scripts/make-format-fixtures.sh   (from anywhere; writes into test/fixtures/formats/)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/test/fixtures/audio/03-01-05-02-01-01-21.flac"
out="$root/test/fixtures/formats"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for tool in sox lame opusenc xxd sha256sum; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

# sox with dither off (-D), so that every conversion is a plain rounding, and repeatable random numbers (-R: the
# Ogg serial number of vorbis.ogg).
sx() { sox -R -D -V1 "$@"; }
trim=(trim 1.0 0.5)

# --- byte writers (print straight to stdout: command substitution would drop NUL bytes) ---
byte() { printf "\\x$(printf %02x $(($1 & 255)))"; }
le16() { byte "$1"; byte $(($1 >> 8)); }
le32() { le16 $(($1 & 65535)); le16 $((($1 >> 16) & 65535)); }
le64() { le32 $(($1 & 4294967295)); le32 $((($1 >> 32) & 4294967295)); }
be16() { byte $(($1 >> 8)); byte "$1"; }
be32() { be16 $((($1 >> 16) & 65535)); be16 $(($1 & 65535)); }
# IEEE 754 80-bit extended, as AIFF stores its sample rate; integer rates only (all we need).
ext80() {
  local r=$1 e=0
  while (((r >> (e + 1)) > 0)); do e=$((e + 1)); done
  be16 $((16383 + e))
  local m=$((r << (63 - e))) # top bit set: bash prints it as a negative number, the bits are right
  be32 $(((m >> 32) & 4294967295))
  be32 $((m & 4294967295))
}

# AIFF-C writer for compression types sox cannot write (sowt, fl32):
# aifc OUT COMPRESSION_TYPE SAMPLE_BITS CHANNELS RATE RAW_SAMPLE_FILE
aifc() {
  local file=$1 ctype=$2 bits=$3 ch=$4 rate=$5 raw=$6
  local nbytes frames
  nbytes=$(stat -c %s "$raw")
  frames=$((nbytes / (ch * bits / 8)))
  # COMM: channels(2) frames(4) bits(2) rate(10) type(4) + empty Pascal name padded to even (2) = 24 bytes
  local comm=24 ssnd=$((8 + nbytes))
  {
    printf 'FORM'; be32 $((4 + 12 + 8 + comm + 8 + ssnd + (ssnd & 1)))
    printf 'AIFC'
    printf 'FVER'; be32 4; be32 2726318400 # 0xA2805140, AIFF-C version 1
    printf 'COMM'; be32 $comm; be16 "$ch"; be32 "$frames"; be16 "$bits"; ext80 "$rate"
    printf '%s' "$ctype"; byte 0; byte 0
    printf 'SSND'; be32 $ssnd; be32 0; be32 0
    cat "$raw"
    if ((ssnd & 1)); then byte 0; fi
  } >"$file"
}

cd "$out"
rm -f ./*.wav ./*.flac ./*.aiff ./*.aifc ./*.mp3 ./*.opus ./*.ogg ./*.au ./*.bin

# --- reference: the 0.5 s cut as 16-bit FLAC; everything below is made from it and tests compare against it ---
sx "$src" flac16.flac "${trim[@]}"

# --- WAV, integer PCM. -t wavpcm writes a plain WAVE_FORMAT_PCM header; sox's default for >16 bits is EXTENSIBLE ---
sx flac16.flac -t wavpcm -b 8 pcm8.wav
sx flac16.flac -t wavpcm -b 16 pcm16.wav
sx flac16.flac -t wavpcm -b 24 pcm24.wav
sx flac16.flac -t wavpcm -b 32 pcm32.wav
sx flac16.flac -t wav -b 24 ext_pcm24.wav # WAVE_FORMAT_EXTENSIBLE (0xFFFE), subformat PCM
# --- WAV, IEEE float ---
sx flac16.flac -e floating-point -b 32 float32.wav
sx flac16.flac -e floating-point -b 64 float64_short.wav trim 0 0.25
# --- telephone band: 8 kHz 16-bit, and μ-law / A-law made from that same 16-bit file ---
sx flac16.flac -t wavpcm -b 16 -r 8000 pcm16_8k.wav
sx pcm16_8k.wav -e u-law mulaw_8k.wav
sx pcm16_8k.wav -e a-law alaw_8k.wav
# --- other rates ---
sx flac16.flac -t wavpcm -b 16 -r 44100 pcm16_44k1.wav
sx flac16.flac -b 24 -r 48000 flac24_48k.flac
# --- stereo whose channels differ: left = the clip, right = the clip inverted ---
sx flac16.flac "$tmp/inv.wav" vol -1
sx -M flac16.flac "$tmp/inv.wav" -t wavpcm -b 16 stereo_inverted.wav
# --- FLAC, AIFF, AIFF-C ---

sx flac16.flac --comment "" -b 16 aiff16.aiff # no COMT chunk: it would hold a timestamp
sx flac16.flac -b 16 -t aifc aifc_none.aifc
sx flac16.flac -t raw -e signed-integer -b 16 -L "$tmp/s16le.raw"
aifc aifc_sowt.aifc sowt 16 1 16000 "$tmp/s16le.raw"
sx flac16.flac -t raw -e floating-point -b 32 -B "$tmp/f32be.raw"
aifc aifc_fl32.aifc fl32 32 1 16000 "$tmp/f32be.raw"
# --- lossy: MP3 (mono, 16 kHz, MPEG-2 layer III) and Ogg Opus ---
sx flac16.flac -t wavpcm -b 16 "$tmp/ref.wav"
# 64 kbit/s: at lower CBR rates a 16 kHz frame is too small for the LAME tag, and without it the decoder cannot
# remove the encoder delay (1105 samples)
lame --quiet -m m -b 64 "$tmp/ref.wav" mono_16k.mp3
opusenc --quiet --serial 1 --bitrate 24 "$tmp/ref.wav" mono.opus

# --- RF64 (EBU Tech 3306): the pcm16 fmt + data, with the sizes moved into a ds64 chunk ---
sx flac16.flac -t wavpcm -b 16 "$tmp/short.wav" trim 0 0.25
head -c 36 "$tmp/short.wav" | tail -c 24 >"$tmp/fmt.chunk" # 'fmt ' + size 16 + 16 bytes
tail -c +45 "$tmp/short.wav" >"$tmp/short.data"
dsize=$(stat -c %s "$tmp/short.data")
{
  printf 'RF64'; le32 4294967295; printf 'WAVE'
  printf 'ds64'; le32 28; le64 $((4 + 36 + 24 + 8 + dsize)); le64 "$dsize"; le64 $((dsize / 2)); le32 0
  cat "$tmp/fmt.chunk"
  printf 'data'; le32 4294967295
  cat "$tmp/short.data"
} >rf64_pcm16.wav

# --- broken on purpose ---
: >empty.wav
head -c 30 pcm16.wav >truncated_header.wav                 # ends inside the fmt chunk
head -c 3000 pcm16.wav >cut_short.wav                      # data chunk declares 16000 bytes, 2956 are there
head -c $(($(stat -c %s flac16.flac) / 2)) flac16.flac >truncated.flac
head -c 1500 mono.opus >truncated.opus                     # ends inside an Ogg page, no end-of-stream page
printf 'This is a text file with a .wav name, not audio.\n' >text.wav
for i in $(seq 1 64); do printf 'callmood-%d' "$i" | sha256sum | cut -c1-64; done | xxd -r -p >random.bin
# a float WAV with a NaN and an infinity in its samples (sox cannot write them; patch two samples in place)
sx flac16.flac -e floating-point -b 32 float32_nan.wav trim 0 0.05
off=$(grep -obUa 'data' float32_nan.wav | head -1 | cut -d: -f1)
printf '\x00\x00\xc0\x7f\x00\x00\x80\x7f' | dd of=float32_nan.wav bs=1 seek=$((off + 8 + 40)) conv=notrunc status=none
# formats we reject with UNSUPPORTED_FORMAT: IMA ADPCM inside WAV, Sun .au, Ogg Vorbis
sx flac16.flac -e ima-adpcm ima_adpcm.wav trim 0 0.1
sx flac16.flac -t au sun.au trim 0 0.1
sx flac16.flac -t vorbis vorbis.ogg trim 0 0.1
# a WAV with a header only: no samples at all
sx flac16.flac -t wavpcm -b 16 no_samples.wav trim 0 0


du -ch ./* | tail -1
