"""finetuner web app: `python app.py`, then open http://127.0.0.1:7860 (also the Hugging Face Space entry point).

Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (or HOST / PORT); runs are kept under
FINETUNER_RUNS_DIR (default ./runs). Uploads larger than FINETUNER_MAX_UPLOAD_MB (default: the larger of the
table size limit FINETUNER_MAX_FILE_MB and 2048 MB, room for a model zip) are refused before they are stored.
"""

import os

from finetuner.data import Limits
from finetuner.ui import build_app


def max_upload_bytes() -> int:
    """The largest upload Gradio accepts. Tables are held to their own, smaller limit when read; model zips
    (hundreds of MB for a base-size model) are checked again when unpacked."""
    default = max(Limits.from_env().max_file_mb, 2048)
    return int(float(os.environ.get("FINETUNER_MAX_UPLOAD_MB") or default) * 1024 * 1024)


if __name__ == "__main__":
    app = build_app()
    app.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME") or os.environ.get("HOST") or None,
        server_port=int(os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or 7860),
        run_history=False,  # Gradio's own per-browser call history would keep copies of uploaded tables
        footer_links=["api", "gradio"],
        max_file_size=max_upload_bytes(),
    )
