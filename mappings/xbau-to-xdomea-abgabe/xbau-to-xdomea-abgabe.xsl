<?xml version="1.0" encoding="UTF-8"?>
<!--
  XBau (2.6 messages and XBau-Kernmodul 1.3 process messages) → xdomea 3.0.0 Abgabe.Abgabe.0401.
  Part of xoev-hub's mapping mappings/xbau-to-xdomea-abgabe. Header elements are matched by local name:
  XBau writes nachrichtenkopf.g2g and its children unqualified, and the message namespace differs
  between XBau and the Kernmodul.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:xdomea="urn:xoev-de:xdomea:schema:3.0.0">

  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <!-- From the hub's context (every context value arrives as a string parameter). -->
  <xsl:param name="message_id"/>
  <xsl:param name="tenant"/>
  <xsl:param name="received_at"/>
  <!-- From [params] in mapping.toml. -->
  <xsl:param name="produkt_version"/>

  <xsl:variable name="nachricht" select="/*"/>
  <xsl:variable name="kopf" select="/*/*[local-name() = 'nachrichtenkopf.g2g']"/>
  <xsl:variable name="identifikation" select="$kopf/*[local-name() = 'identifikation.nachricht']"/>
  <xsl:variable name="uuid" select="normalize-space($identifikation/*[local-name() = 'nachrichtenUUID'])"/>
  <xsl:variable name="vorgang" select="normalize-space(/*/*[local-name() = 'bezug']/*[local-name() = 'vorgang'])"/>

  <xsl:template match="/">
    <xsl:if test="not($kopf)">
      <xsl:message terminate="yes">not an XBau message: no nachrichtenkopf.g2g under the root element</xsl:message>
    </xsl:if>
    <xsl:if test="string-length($uuid) != 36">
      <xsl:message terminate="yes">the XBau message has no nachrichtenUUID (needed as the document's ID)</xsl:message>
    </xsl:if>
    <xdomea:Abgabe.Abgabe.0401>
      <xdomea:Kopf>
        <xdomea:ProzessID>
          <xsl:choose>
            <xsl:when test="string-length($message_id) = 36"><xsl:value-of select="$message_id"/></xsl:when>
            <xsl:otherwise><xsl:value-of select="$uuid"/></xsl:otherwise>
          </xsl:choose>
        </xdomea:ProzessID>
        <xdomea:Nachrichtentyp listURI="urn:xoev-de:xdomea:codeliste:nachrichtentyp" listVersionID="2.0">
          <code>0401</code>
        </xdomea:Nachrichtentyp>
        <xdomea:Erstellungszeitpunkt>
          <xsl:choose>
            <xsl:when test="$received_at != ''"><xsl:value-of select="$received_at"/></xsl:when>
            <xsl:otherwise>
              <xsl:value-of select="normalize-space($identifikation/*[local-name() = 'erstellungszeitpunkt'])"/>
            </xsl:otherwise>
          </xsl:choose>
        </xdomea:Erstellungszeitpunkt>
        <xdomea:Absender>
          <xsl:apply-templates select="$kopf/*[local-name() = 'autor']" mode="kontakt"/>
        </xdomea:Absender>
        <xdomea:Empfaenger>
          <xsl:apply-templates select="$kopf/*[local-name() = 'leser']" mode="kontakt"/>
        </xdomea:Empfaenger>
        <xdomea:SendendesSystem>
          <xsl:if test="$tenant != ''">
            <xdomea:InstanzID><xsl:value-of select="$tenant"/></xdomea:InstanzID>
          </xsl:if>
          <xdomea:Produktname>xoev-hub</xdomea:Produktname>
          <xsl:if test="$produkt_version != ''">
            <xdomea:Version><xsl:value-of select="$produkt_version"/></xdomea:Version>
          </xsl:if>
        </xdomea:SendendesSystem>
        <xdomea:Importbestaetigung>1</xdomea:Importbestaetigung>
        <xdomea:Empfangsbestaetigung>0</xdomea:Empfangsbestaetigung>
      </xdomea:Kopf>
      <xdomea:Schriftgutobjekt>
        <xdomea:Dokument>
          <xdomea:Identifikation>
            <xdomea:ID><xsl:value-of select="$uuid"/></xdomea:ID>
          </xdomea:Identifikation>
          <xdomea:AllgemeineMetadaten>
            <xdomea:Betreff>
              <xsl:value-of select="concat($nachricht/@standard, ' ', $nachricht/@version, ': ', local-name($nachricht))"/>
              <xsl:if test="$vorgang != ''"><xsl:value-of select="concat(' (Vorgang ', $vorgang, ')')"/></xsl:if>
            </xdomea:Betreff>
            <xsl:if test="$vorgang != ''">
              <xdomea:Kennzeichen><xsl:value-of select="$vorgang"/></xdomea:Kennzeichen>
            </xsl:if>
          </xdomea:AllgemeineMetadaten>
          <xdomea:Posteingangsdatum>
            <xsl:choose>
              <xsl:when test="$received_at != ''"><xsl:value-of select="substring($received_at, 1, 10)"/></xsl:when>
              <xsl:otherwise>
                <xsl:value-of select="substring(normalize-space($identifikation/*[local-name() = 'erstellungszeitpunkt']), 1, 10)"/>
              </xsl:otherwise>
            </xsl:choose>
          </xdomea:Posteingangsdatum>
          <xdomea:Typ><xsl:value-of select="local-name($nachricht)"/></xdomea:Typ>
          <xdomea:Version>
            <xdomea:Nummer>1</xdomea:Nummer>
            <xdomea:Format>
              <!-- 030 = xml (code list urn:xoev-de:xdomea:codeliste:dateiformat, version 1.0) -->
              <xdomea:Name listURI="urn:xoev-de:xdomea:codeliste:dateiformat" listVersionID="1.0">
                <code>030</code>
              </xdomea:Name>
              <xdomea:Version>1.0</xdomea:Version>
              <xdomea:Primaerdokument>
                <xdomea:Dateiname><xsl:value-of select="concat($uuid, '_', local-name($nachricht), '.xml')"/></xdomea:Dateiname>
                <xdomea:DateinameOriginal><xsl:value-of select="concat(local-name($nachricht), '.xml')"/></xdomea:DateinameOriginal>
                <xdomea:Ersteller><xsl:value-of select="normalize-space($kopf/*[local-name() = 'autor']/*[local-name() = 'name'])"/></xdomea:Ersteller>
              </xdomea:Primaerdokument>
            </xdomea:Format>
          </xdomea:Version>
        </xdomea:Dokument>
      </xdomea:Schriftgutobjekt>
    </xdomea:Abgabe.Abgabe.0401>
  </xsl:template>

  <!-- An XBau authority (autor/leser: verzeichnisdienst, kennung, name) as an xdomea Kontakt. -->
  <xsl:template match="*" mode="kontakt">
    <xsl:variable name="kennung" select="normalize-space(*[local-name() = 'kennung'])"/>
    <xsl:variable name="name" select="normalize-space(*[local-name() = 'name'])"/>
    <xsl:if test="$kennung != ''">
      <xdomea:Behoerdenkennung>
        <xdomea:Behoerdenschluessel>
          <code><xsl:value-of select="$kennung"/></code>
          <xsl:if test="$name != ''"><name><xsl:value-of select="$name"/></name></xsl:if>
        </xdomea:Behoerdenschluessel>
      </xdomea:Behoerdenkennung>
    </xsl:if>
    <xsl:if test="$name != ''">
      <xdomea:Institution>
        <xdomea:Name><xsl:value-of select="$name"/></xdomea:Name>
      </xdomea:Institution>
    </xsl:if>
  </xsl:template>
</xsl:stylesheet>
