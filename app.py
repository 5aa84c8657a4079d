"""finetuner web app: `python app.py`, then open http://127.0.0.1:7860 (also the Hugging Face Space entry point).

Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (or HOST / PORT); runs are kept under
FINETUNER_RUNS_DIR (default ./runs).
"""

import os

from finetuner.ui import build_app

if __name__ == "__main__":
    app = build_app()
    app.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME") or os.environ.get("HOST") or None,
        server_port=int(os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or 7860),
        run_history=False,  # Gradio's own per-browser call history would keep copies of uploaded tables
        footer_links=["api", "gradio"],
    )
