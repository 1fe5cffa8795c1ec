"""Tiny models built in-process (under a second): a 2-layer BERT with a WordPiece tokenizer trained
on our own texts, saved as a sentence-transformers bi-encoder and as a cross-encoder."""

from __future__ import annotations

from pathlib import Path

from harness.inputs.texts import builtin_texts


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials)
    corpus = builtin_texts("medium", 200) + builtin_texts("short", 200)
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=128)
    fast.save_pretrained(folder)
    return fast


def _config(vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,  # OpenVINO calibration pads to 384
        **extra,
    )


def make_bi_encoder(folder: Path) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import BertModel

    torch.manual_seed(0)
    raw = folder / "raw"
    tokenizer = _tokenizer(raw)
    BertModel(_config(tokenizer.vocab_size)).save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=128)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu")
    out = folder / "tiny-bi"
    model.save(str(out))
    return out


def make_cross_encoder(folder: Path) -> Path:
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    raw = folder / "raw-ce"
    tokenizer = _tokenizer(raw)
    BertForSequenceClassification(_config(tokenizer.vocab_size, num_labels=1)).save_pretrained(raw)
    model = CrossEncoder(str(raw), device="cpu", max_length=128)
    out = folder / "tiny-ce"
    model.save(str(out))
    return out
