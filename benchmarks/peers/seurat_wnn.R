# The Seurat 4.3 chain a user of the reference study would run on a merged CITE-seq matrix:
# RNA LogNormalize -> 2,000 HVG -> scale -> 30 PCs; ADT CLR (margin 2) -> scale -> 15 PCs;
# FindMultiModalNeighbors (WNN) -> FindClusters (resolutions 0.5, 1.0) -> RunUMAP.
# Optional: Harmony on each modality's PCs when the harmony package is installed and batch
# correction is asked for (arg 3 = "harmony").
# Usage: Rscript seurat_wnn.R EXPORT_DIR OUT_TSV [none|harmony]
suppressPackageStartupMessages({
  library(Seurat)
  library(Matrix)
})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
out <- args[2]
correction <- if (length(args) >= 3) args[3] else "none"
set.seed(0)
t_start <- proc.time()[["elapsed"]]
last <- t_start
tick <- function(step) {
  now <- proc.time()[["elapsed"]]
  cat(sprintf("STEP %s %.1f\n", step, now - last))
  last <<- now
}
rna <- as(readMM(file.path(dir, "rna.mtx")), "CsparseMatrix")
rownames(rna) <- readLines(file.path(dir, "genes.txt"))
colnames(rna) <- readLines(file.path(dir, "cells.txt"))
adt <- as(readMM(file.path(dir, "adt.mtx")), "CsparseMatrix")
rownames(adt) <- readLines(file.path(dir, "proteins.txt"))
colnames(adt) <- colnames(rna)
batch <- readLines(file.path(dir, "batch.txt"))
tick("read")
obj <- CreateSeuratObject(counts = rna)
obj[["ADT"]] <- CreateAssayObject(counts = adt)
obj$batch <- batch
DefaultAssay(obj) <- "RNA"
obj <- NormalizeData(obj, verbose = FALSE)
obj <- FindVariableFeatures(obj, nfeatures = 2000, verbose = FALSE)
obj <- ScaleData(obj, verbose = FALSE)
obj <- RunPCA(obj, npcs = 30, verbose = FALSE)
tick("rna_pca")
DefaultAssay(obj) <- "ADT"
VariableFeatures(obj) <- rownames(obj[["ADT"]])
obj <- NormalizeData(obj, normalization.method = "CLR", margin = 2, verbose = FALSE)
obj <- ScaleData(obj, verbose = FALSE)
obj <- RunPCA(obj, npcs = 15, reduction.name = "apca", verbose = FALSE)
tick("adt_pca")
reductions <- list("pca", "apca")
if (correction == "harmony") {
  suppressPackageStartupMessages(library(harmony))
  obj <- RunHarmony(obj, "batch", reduction = "pca", reduction.save = "harmony_rna", assay.use = "RNA", verbose = FALSE)
  obj <- RunHarmony(obj, "batch", reduction = "apca", reduction.save = "harmony_adt", assay.use = "ADT", verbose = FALSE)
  reductions <- list("harmony_rna", "harmony_adt")
  tick("harmony")
}
obj <- FindMultiModalNeighbors(obj, reduction.list = reductions, dims.list = list(1:30, 1:15), verbose = FALSE)
tick("wnn")
obj <- FindClusters(obj, graph.name = "wsnn", resolution = c(0.5, 1.0), verbose = FALSE)
tick("clusters")
obj <- RunUMAP(obj, nn.name = "weighted.nn", reduction.name = "wnn.umap", verbose = FALSE)
tick("umap")
cols <- grep("^wsnn_res", colnames(obj@meta.data), value = TRUE)
write.table(data.frame(cell = colnames(obj), obj@meta.data[, cols]), out, sep = "\t", quote = FALSE,
            row.names = FALSE)
cat(sprintf("TOTAL %.1f\n", proc.time()[["elapsed"]] - t_start))
