"""Photo reader: what the model reads in a photo, factor by factor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer import clicks, ui
from explorer.runs import example_photos
from ivae.factors import image_to_recipes, poles, search_weights
from ivae.queries import ordinal
from ivae.read_photo import verdict
from ivae.uploads import ACCEPTED_EXTENSIONS, MAX_BYTES, UploadError, read_upload

st.title("Photo reader")
st.caption(
    "Upload a food photo: the image encoder reads each shared factor from it. Percentiles "
    "compare the photo with every dish in the data; the recipes are retrieved by the model's "
    "own image–recipe score. Every photo is also checked against the training photos: one "
    "unlike them all is flagged, and its factor values are extrapolations."
)
ctx = ui.require_context()
clicks.go_to_studio_if_asked()
upload = st.file_uploader(
    "A food photo (JPEG, PNG, WebP, GIF; up to 10 MB)",
    type=ACCEPTED_EXTENSIONS,
    key="reader_upload",
)
examples = {path.name: path for path in example_photos()}
example = st.selectbox("…or try an example photo", ["(none)", *examples], key="reader_example")
if upload is not None:
    name, content = upload.name, upload.getvalue()
elif example in examples:
    name, content = example, examples[example].read_bytes()
else:
    st.info("Upload a photo, or pick an example, to read its factors.")
    st.stop()
try:
    photo = read_upload(content, name, max_bytes=MAX_BYTES)
except UploadError as error:
    st.error(str(error))
    st.stop()

reader = ui.photo_reader(str(ctx.run.path))
reading = reader.read(photo)
z, pct = reading.z, reading.percentiles
if reading.unfamiliarity is None:
    st.info(f"No unfamiliarity check for this run: {reader.problem}")
elif reading.unfamiliar:
    st.warning(f"**Unlike the training dishes.** {verdict(reading, reader.check.pass_rate)}")
else:
    st.success(verdict(reading, reader.check.pass_rate))
near, distances = ctx.index.nearest(z, n=8, weights=search_weights(ctx.index.z))
left, right = st.columns([1, 2])
caption = f"{ui.plain(name)} ({photo.width}x{photo.height})"  # the visitor names the file
left.image(photo, caption=caption, width="stretch")
with right:
    st.subheader("Factor values")
    table = pd.DataFrame({"factor": ctx.names, "value": np.round(z, 3), "percentile": pct})
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "percentile": st.column_config.ProgressColumn(
                "percentile in the data", min_value=0, max_value=100, format="%.0f"
            )
        },
    )
    st.caption(f"Standardised distance to the nearest real dish: {distances[0]:.2f}")
    st.button(
        "Open in the studio",
        key="reader_to_studio",
        icon=":material/tune:",
        on_click=clicks.start_studio,
        kwargs={"point": z, "source": f"the photo {name}"},
        help="Start the factor studio at this photo's factor values.",
    )

st.subheader("Nearest recipes (image → recipe)")
rows, scores = image_to_recipes(ctx.run, ctx.index, z, n=8)
st.dataframe(
    ui.recipe_table(ctx, rows, {"score": np.round(scores, 2)}), hide_index=True, width="stretch"
)
st.subheader("Nearest real dishes")
st.caption("Click a dish to start the studio from it.")
clicks.listen("reader_clicks", lambda row: clicks.start_studio(dish=str(ctx.index.ids[row])))
with clicks.pickable("reader_near", near):
    ui.image_grid(
        ctx, near, [f"{ctx.title(r)} · d={d:.2f}" for r, d in zip(near, distances, strict=True)]
    )

st.subheader("The poles of each factor")
st.caption("The dishes lowest and highest on each factor, to judge where the photo sits.")
for j in range(ctx.k):
    at = ordinal(round(pct[j]))
    with st.expander(f"{ui.factor_label(ctx, j)}: this photo is at the {at} percentile"):
        low, high = poles(ctx.index.z, j, n=4)
        for label, rows, end in (("Lowest", low, "low"), ("Highest", high, "high")):
            st.markdown(f"**{label}**")
            with clicks.pickable(f"reader_{end}{j}", rows):  # a click starts the studio there
                ui.image_grid(ctx, rows)
